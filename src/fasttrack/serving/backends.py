"""Inference backends: the one small interface between validated input and a model's arithmetic.

The :class:`~fasttrack.serving.predictor.Predictor` validates records and builds *columns* (one numpy array per
feature, in the schema's order); a :class:`Backend` turns columns into predictions. The scikit-learn backend here
builds the pandas frame the pipeline was fitted on; the ONNX Runtime backend feeds the same columns to the
model's checked ``model.onnx`` (no pandas, one intra-op thread), and :func:`select_backend` is the single place
that picks one when a model is loaded (``FASTTRACK_ENGINE``: auto, onnx or sklearn), so routes never change.

Columns, as every backend receives them:

- numeric and boolean features: ``float64`` arrays, ``NaN`` for missing (booleans as 0.0/1.0);
- categorical features: ``object`` arrays of Python ``str``, ``np.nan`` for missing (what scikit-learn's encoders
  and ``fasttrack.data.schema.prepare_features`` use).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from fasttrack.config import Engine
from fasttrack.data.schema import Label, Schema
from fasttrack.errors import ModelLoadError
from fasttrack.registry.model_folder import LoadedModel

if TYPE_CHECKING:
    import pandas as pd

    from fasttrack.registry.onnx import OnnxModel

log = logging.getLogger(__name__)

Columns = Mapping[str, np.ndarray]


class Backend(Protocol):
    """Predicts from validated columns. ``classes`` orders the probability columns (classifiers; else ``None``)."""

    name: str
    classes: list[Label] | None

    def predict(self, columns: Columns, *, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Predicted labels or values (one per row) and, when asked and a classifier, the class probabilities."""
        ...


class SklearnBackend:
    """The fitted scikit-learn pipeline, fed the exact frame ``prepare_features`` would build."""

    name = "sklearn"

    def __init__(self, pipeline: Any, schema: Schema, classifier: bool) -> None:
        self.pipeline = pipeline
        self._categorical = frozenset(f.name for f in schema.features if f.kind == "categorical")
        self._names = schema.feature_names
        self.classes: list[Label] | None = np.asarray(pipeline.classes_).tolist() if classifier else None

    def frame(self, columns: Columns) -> pd.DataFrame:
        """The model input frame: feature order, ``float64`` numbers, ``object`` categories (never pandas ``str``)."""
        import pandas as pd  # here: a model served through ONNX Runtime never needs pandas

        return pd.DataFrame(
            {
                name: pd.Series(columns[name], dtype=object, copy=False) if name in self._categorical else columns[name]
                for name in self._names
            },
            copy=False,
        )

    def predict(self, columns: Columns, *, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """``pipeline.predict`` (and ``predict_proba`` when asked) on the frame of ``columns``."""
        frame = self.frame(columns)
        values = np.asarray(self.pipeline.predict(frame))
        if probabilities and self.classes is not None:
            return values, np.asarray(self.pipeline.predict_proba(frame), dtype=np.float64)
        return values, None


class OnnxBackend:
    """The model's ``model.onnx`` in ONNX Runtime, fed the columns directly (no pandas, no scikit-learn).

    The graph was checked against the scikit-learn pipeline at registration (identical labels, probabilities
    and values within float32 tolerances: see :mod:`fasttrack.registry.onnx`). Labels come back as the
    original labels; regression values and probabilities are widened from float32 to float64, so they become
    plain Python floats downstream. ``classes`` are the labels the model was opened with (probability order).
    """

    name = "onnx"

    def __init__(self, model: OnnxModel) -> None:
        self.model = model
        self.classes: list[Label] | None = list(model.labels) if model.is_classifier else None
        self._features = [(f.name, f.kind == "categorical") for f in model.schema.features]

    def feeds(self, columns: Columns) -> dict[str, np.ndarray]:
        """The graph's input tensors for validated ``columns``: float32 ``[n, 1]`` numbers and ``[n, 1]`` text.

        Validated categories are already the category text (see the module docstring), so only missing values
        change, to :data:`~fasttrack.registry.onnx.MISSING_CATEGORY`; the general conversion in
        :meth:`OnnxModel.feeds` (any value to its category text) is for columns of unknown origin.
        """
        from fasttrack.registry.onnx import MISSING_CATEGORY, numeric_tensor

        feeds: dict[str, np.ndarray] = {}
        for name, categorical in self._features:
            column = columns[name]
            if categorical:
                text = np.empty(len(column), dtype=object)
                # Validated: text, or NaN for missing.
                text[:] = [value if type(value) is str else MISSING_CATEGORY for value in column.tolist()]
                feeds[name] = text.reshape(-1, 1)
            else:
                feeds[name] = numeric_tensor(column, len(column))
        return feeds

    def predict(self, columns: Columns, *, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """The graph's labels (or values) for ``columns`` and, when asked and a classifier, the probabilities."""
        values, proba = self.model.run(self.feeds(columns))
        if values.dtype == np.float32:
            values = values.astype(np.float64)
        if probabilities and self.classes is not None and proba is not None:
            return values, proba.astype(np.float64)
        return values, None


def _no_onnx_reason(model: LoadedModel) -> str:
    """Why a model folder has no ONNX model that may be served."""
    info = model.metadata.onnx
    if info is None:
        return "it was registered without an ONNX export"
    if info.status != "ok":
        return f"its ONNX export {info.status}" + (f" ({info.reason})" if info.reason else "")
    return "extra_files/model.onnx is missing"


def select_backend(model: LoadedModel, engine: Engine = "auto") -> Backend:
    """The backend for a loaded model folder: the one place an engine is chosen.

    ``sklearn`` always serves the pipeline; ``onnx`` serves ``model.onnx`` and refuses a model without one
    that agreed with scikit-learn at registration (``ModelLoadError``); ``auto`` serves ONNX when there is
    such a file and ONNX Runtime opens it, else scikit-learn, saying why.
    """
    where = f"{model.metadata.name} ({model.path})"
    if engine == "sklearn":
        log.info("%s: serving with scikit-learn (FASTTRACK_ENGINE=sklearn)", where)
        return SklearnBackend(model.pipeline, model.schema, model.is_classifier)
    if model.onnx_path is None:
        reason = _no_onnx_reason(model)
        if engine == "onnx":
            raise ModelLoadError(f"{where}: FASTTRACK_ENGINE=onnx but the model has no usable ONNX model: {reason}")
        log.info("%s: serving with scikit-learn: %s", where, reason)
        return SklearnBackend(model.pipeline, model.schema, model.is_classifier)
    try:
        onnx = model.onnx_model()
    except ModelLoadError as exc:
        if engine == "onnx":
            raise
        log.warning("%s: serving with scikit-learn: %s", where, exc)
        return SklearnBackend(model.pipeline, model.schema, model.is_classifier)
    assert onnx is not None  # onnx_path is set, so onnx_model() opened it or raised
    log.info("%s: serving with ONNX Runtime (model.onnx agreed with scikit-learn at registration)", where)
    return OnnxBackend(onnx)
