"""Whether an exported graph may stand in for its pipeline: the agreement check, and the registration hook.

At registration :func:`export_to_folder` converts the fitted pipeline (:func:`fasttrack.export.onnx.convert`),
runs the graph and the pipeline on the held-out rows through the two runtimes (:mod:`fasttrack.runtime`), and
keeps ``model.onnx`` only when they agree (:func:`check_agreement`): identical labels for classifiers and
probabilities within :data:`PROBA_ATOL`, values within :data:`REGRESSION_RTOL` for regressors. Anything else -- a
converter that raises, a graph that does not run or disagrees -- is recorded with its reason, and the pipeline
serves; exporting never makes training fail.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fasttrack.data.schema import Label, Schema
from fasttrack.export.onnx import Task, convert
from fasttrack.registry.model_folder import ONNX_FILE, OnnxInfo
from fasttrack.runtime.base import Prediction
from fasttrack.runtime.onnx import OnnxRuntime
from fasttrack.runtime.sklearn import SklearnRuntime

if TYPE_CHECKING:
    import pandas as pd

#: Libraries whose versions are recorded with an export.
ONNX_LIBRARIES = ("onnx", "onnxruntime", "skl2onnx", "onnxmltools")
#: Regression agreement: ``|onnx - sklearn| <= REGRESSION_RTOL * max(|sklearn|, scale)``, see check_agreement.
REGRESSION_RTOL = 1e-4
#: Classification agreement: largest absolute difference allowed between the two models' probabilities.
PROBA_ATOL = 1e-4

OnnxStatus = Literal["ok", "failed", "disagrees"]


@dataclass(frozen=True)
class Agreement:
    """How an ONNX model's predictions compare with scikit-learn's on the same rows.

    ``mismatches`` counts rows whose label differs (classification) or whose value is outside the tolerance
    (regression). ``max_abs_diff`` is the largest absolute difference of a probability (classification) or a value
    (regression); ``max_rel_diff`` the largest difference relative to ``max(|value|, scale)`` for regression.
    ``ok`` means no mismatch and, for classifiers, probabilities within :data:`PROBA_ATOL`.
    """

    rows: int
    mismatches: int
    max_abs_diff: float
    max_rel_diff: float | None = None
    tolerance: str = ""

    @property
    def ok(self) -> bool:
        """Whether the ONNX model may stand in for the scikit-learn one."""
        if self.mismatches:
            return False
        if self.max_rel_diff is not None:
            return True
        return self.max_abs_diff <= PROBA_ATOL

    def describe(self) -> str:
        """One line for people: what was compared and what differed."""
        what = "values" if self.max_rel_diff is not None else "labels"
        text = f"{self.mismatches} of {self.rows} held-out rows have different {what}"
        if self.max_rel_diff is not None:
            return f"{text} (largest relative difference {self.max_rel_diff:.3g}; {self.tolerance})"
        return f"{text}; largest probability difference {self.max_abs_diff:.3g} ({self.tolerance})"


@dataclass(frozen=True)
class ExportResult:
    """The outcome of converting and checking a fitted pipeline.

    ``onnx`` holds the serialised graph when the conversion produced one; with ``status`` ``"disagrees"`` it is
    kept for inspection but must not be served. ``reason`` says why the status is not ``"ok"``.
    """

    onnx: bytes | None
    status: OnnxStatus
    reason: str | None = None
    agreement: Agreement | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the graph was produced and agrees with scikit-learn."""
        return self.status == "ok" and self.onnx is not None


def onnx_versions() -> dict[str, str]:
    """Installed versions of the ONNX libraries (those installed)."""
    found: dict[str, str] = {}
    for name in ONNX_LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def export(
    pipeline: Any,
    schema: Schema,
    task: Task,
    X_test: pd.DataFrame,  # noqa: N803
    *,
    labels: Sequence[Label] | None = None,
    reference: Prediction | None = None,
) -> ExportResult:
    """Convert ``pipeline`` and check it against scikit-learn on the prepared held-out rows ``X_test``.

    ``reference`` is what the pipeline predicted for those rows, when the caller has it (training does), with
    probabilities ordered like ``labels``; it spares predicting them again. ``status`` is ``"ok"`` only when both
    agree; ``"disagrees"`` keeps the bytes and the :class:`Agreement`; ``"failed"`` says why conversion or the
    check raised. Never raises.
    """
    started = time.perf_counter()
    try:
        onnx = convert(pipeline, schema, task)
    except Exception as exc:  # any converter failure means "serve the sklearn model", with the reason
        return ExportResult(onnx=None, status="failed", reason=_reason(exc), seconds=time.perf_counter() - started)
    try:
        runtime = OnnxRuntime.open(onnx, schema, task, labels)
        agreement = check_agreement(runtime, SklearnRuntime(pipeline, schema, task, _list(labels)), X_test, reference)
    except Exception as exc:  # a graph ONNX Runtime cannot run is a failed export, not a failed training
        reason = f"the converted model does not run: {_reason(exc)}"
        return ExportResult(onnx=None, status="failed", reason=reason, seconds=time.perf_counter() - started)
    seconds = time.perf_counter() - started
    if not agreement.ok:
        return ExportResult(onnx, "disagrees", agreement.describe(), agreement, seconds)
    return ExportResult(onnx, "ok", agreement=agreement, seconds=seconds)


def export_to_folder(
    pipeline: Any,
    schema: Schema,
    task: Task,
    X_test: pd.DataFrame,  # noqa: N803
    folder: Path,
    *,
    labels: Sequence[Label] | None = None,
    reference: Prediction | None = None,
) -> tuple[OnnxInfo, Path | None]:
    """:func:`export`, writing ``model.onnx`` into ``folder`` when it agrees; what to record, and the file.

    The registration hook: it never raises, so a model whose conversion fails is still registered (and served by
    scikit-learn), with the reason in its metadata and run tags.
    """
    started = time.perf_counter()
    try:
        result = export(pipeline, schema, task, X_test, labels=labels, reference=reference)
        path = None
        if result.ok and result.onnx is not None:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / ONNX_FILE
            path.write_bytes(result.onnx)
    except Exception as exc:  # the hook's promise: never fail a training run
        info = OnnxInfo(
            status="failed", reason=_reason(exc), seconds=time.perf_counter() - started, libraries=onnx_versions()
        )
        return info, None
    agreement = result.agreement
    info = OnnxInfo(
        status=result.status,
        reason=result.reason,
        rows_checked=agreement.rows if agreement else 0,
        mismatches=agreement.mismatches if agreement else 0,
        max_abs_diff=agreement.max_abs_diff if agreement else None,
        max_rel_diff=agreement.max_rel_diff if agreement else None,
        tolerance=agreement.tolerance if agreement else None,
        seconds=round(result.seconds, 3),
        libraries=onnx_versions(),
    )
    return info, path


def check_agreement(
    onnx: OnnxRuntime,
    sklearn: SklearnRuntime,
    X_test: pd.DataFrame,  # noqa: N803
    reference: Prediction | None = None,
) -> Agreement:
    """Compare the two runtimes of one model on prepared rows (``prepare_features`` output).

    Classifiers must predict identical labels on every row, and their probabilities must agree within
    :data:`PROBA_ATOL` (1e-4): ONNX Runtime computes in float32, whose rounding moves a probability by about 1e-7,
    so 1e-4 leaves room for long sums while still catching a wrong tree or a misplaced category. Regressors agree
    when ``|onnx - sklearn| <= 1e-4 * max(|sklearn|, scale)`` on every row, ``scale`` being the mean absolute
    prediction: float32 carries about 7 significant digits, and a sum of a few hundred trees or one-hot terms loses
    one or two of them, so 1e-4 relative is a few hundred times the rounding error yet far below any difference a
    person would act on. The ``scale`` floor keeps predictions near zero from turning harmless absolute rounding
    into huge relative errors. scikit-learn's side is ``reference`` when given and of the right length.
    """
    rows = len(X_test)
    if rows == 0:
        return Agreement(rows=0, mismatches=0, max_abs_diff=0.0, tolerance="no rows to compare")
    columns = {name: X_test[name].to_numpy() for name in onnx.schema.feature_names}
    classifier = onnx.labels is not None
    graph = onnx.predict(columns, rows, probabilities=classifier)
    if reference is None or len(reference.values) != rows or (classifier and reference.probabilities is None):
        reference = sklearn.predict(columns, rows, probabilities=classifier)
    if not classifier:
        truth = np.asarray(reference.values, dtype=np.float64).ravel()
        values = np.asarray(graph.values, dtype=np.float64).ravel()
        diff = np.abs(values - truth)
        scale = max(float(np.mean(np.abs(truth))), np.finfo(np.float64).tiny)
        allowed = REGRESSION_RTOL * np.maximum(np.abs(truth), scale)
        return Agreement(
            rows=rows,
            mismatches=int(np.count_nonzero(~(diff <= allowed))),
            max_abs_diff=_finite_max(diff),
            max_rel_diff=_finite_max(diff / np.maximum(np.abs(truth), scale)),
            tolerance=f"rtol {REGRESSION_RTOL:g} of max(|value|, mean |value| = {scale:.4g})",
        )
    mismatches = int(np.count_nonzero(_objects(graph.values) != _objects(reference.values)))
    max_diff = 0.0
    if graph.probabilities is not None and reference.probabilities is not None:
        # Both runtimes order probabilities like the model's labels.
        diff = np.abs(np.asarray(graph.probabilities, dtype=np.float64) - np.asarray(reference.probabilities))
        max_diff = _finite_max(diff)
    return Agreement(
        rows=rows, mismatches=mismatches, max_abs_diff=max_diff, tolerance=f"probability atol {PROBA_ATOL:g}"
    )


def _reason(exc: BaseException) -> str:
    """An exception as one line of at most 500 characters (converter errors can dump whole graphs)."""
    text = " ".join(str(exc).split())
    if len(text) > 500:
        text = text[:497] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _finite_max(values: np.ndarray[Any, Any]) -> float:
    if values.size == 0:
        return 0.0
    top = float(np.max(values))
    return top if math.isfinite(top) else math.inf


def _objects(values: Any) -> np.ndarray[Any, Any]:
    return np.asarray(np.asarray(values).tolist(), dtype=object)


def _list(labels: Sequence[Label] | None) -> list[Label] | None:
    return None if labels is None else list(labels)
