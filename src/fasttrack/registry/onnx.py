"""The fast path: a fitted pipeline as an ONNX graph, checked against scikit-learn, run by ONNX Runtime.

At registration :func:`export` converts the fitted pipeline (:func:`convert`), runs both on the held-out rows
(:func:`check_agreement`) and keeps the ONNX file only when they agree: identical labels for classifiers (and
probabilities within :data:`PROBA_ATOL`), values within :data:`REGRESSION_RTOL` for regressors. Anything else
-- a converter that raises, a model that disagrees -- is recorded with its reason and the scikit-learn model is
served; conversion never makes training fail.

The graph has one input per feature, in schema order: ``float`` ``[N, 1]`` for numeric and boolean features
(NaN for missing; the pipeline's imputer runs inside the graph), ``string`` ``[N, 1]`` for categorical ones
(:data:`MISSING_CATEGORY` for missing, because ONNX string tensors cannot hold NaN). skl2onnx makes input names
identifiers (``education-num`` becomes ``education_num``), so the graph records which feature feeds which
input (metadata ``fasttrack.features``). Classifiers output their labels as the original values, the class
probabilities as a plain ``[N, k]`` float tensor (no ZipMap) in ``classes_`` order (metadata
``fasttrack.classes``), and each label's index in the classes (``fasttrack_label_index``, which spares batch
scoring a Python object per row); regressors output ``[N, 1]`` floats.

:class:`OnnxModel` runs such a file without pandas or scikit-learn: it builds the input tensors straight from
columns or records, runs one single-threaded ONNX Runtime session (safe to share between threads), and returns
labels and probabilities ordered like the model's labels.

Two converter problems are solved here rather than avoided:

* skl2onnx 1.20's HistGradientBoosting converter writes the ``nodes_missing_value_tracks_true`` flag of every
  leaf as the Python literal ``False`` (branch nodes get the ``uint8`` from scikit-learn's tree arrays).
  protobuf 7 no longer accepts a ``bool`` in an integer field ("Expected an int, got a boolean"), so every HGB
  model failed. :func:`_integer_attributes` wraps the converter for this one conversion (passed to
  ``convert_sklearn`` as a custom conversion function, nothing patched globally) so that boolean attribute
  values reach ONNX as the 0/1 integers ONNX defines them as. The flag is meaningless on leaves, and on
  branches it is passed through unchanged, so the graph is exactly the one skl2onnx meant to build.
* XGBoost's classifier sits inside :class:`~fasttrack.training.estimators.LabelEncodedClassifier`. Its
  converter emits onnxmltools' XGBoost graph for ``estimator_`` (integer classes ``0..k-1``) and maps the
  predicted index back to the original label with an ONNX-ML ``LabelEncoder`` node.

And one is designed around: the categorical imputer is left out of the graph (see :func:`_graph_pipeline`), so
that each string input goes straight into its one-hot encoder.
"""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fasttrack.features.rules import category_text
from fasttrack.registry.model_folder import ONNX_FILE, OnnxInfo

if TYPE_CHECKING:
    import onnxruntime as ort
    import pandas as pd

    from fasttrack.data.schema import FeatureSchema, Label, Schema

#: What a missing categorical value is in the graph: :data:`fasttrack.training.pipeline.MISSING_CATEGORY`,
#: repeated here (a test keeps the two equal) so that running a graph never imports scikit-learn.
MISSING_CATEGORY = "__missing__"
#: Libraries whose versions are recorded with a conversion.
ONNX_LIBRARIES = ("onnx", "onnxruntime", "skl2onnx", "onnxmltools")
#: Opsets of the exported graph: ones every converter here implements and ONNX Runtime >= 1.16 runs.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
#: Regression agreement: ``|onnx - sklearn| <= REGRESSION_RTOL * max(|sklearn|, scale)``, see check_agreement.
REGRESSION_RTOL = 1e-4
#: Classification agreement: largest absolute difference allowed between the two models' probabilities.
PROBA_ATOL = 1e-4
#: Run tags recording the export: its status, and why when it is not ``ok``.
TAG_ONNX = "fasttrack.onnx"
TAG_ONNX_REASON = "fasttrack.onnx.reason"
#: Keys of the metadata the exported graph carries about itself: the feature fed to each input, in input
#: order, and the classifier's classes in probability column order.
META_FEATURES = "fasttrack.features"
META_CLASSES = "fasttrack.classes"
#: The extra output of classifier graphs: each row's label as its index in the classes.
LABEL_INDEX = "fasttrack_label_index"

OnnxStatus = Literal["ok", "failed", "disagrees"]
Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Agreement:
    """How an ONNX model's predictions compare with scikit-learn's on the same rows.

    ``mismatches`` counts rows whose label differs (classification) or whose value is outside the tolerance
    (regression). ``max_abs_diff`` is the largest absolute difference of a probability (classification) or a
    value (regression); ``max_rel_diff`` the largest difference relative to ``max(|value|, scale)`` for
    regression. ``ok`` means no mismatch and, for classifiers, probabilities within :data:`PROBA_ATOL`.
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
class Reference:
    """scikit-learn's outputs on the rows an ONNX model is checked on, when the caller has them already.

    ``predictions`` are the pipeline's ``predict`` of those rows; ``proba`` (classifiers) its probabilities, one
    column per entry of ``labels`` (as :func:`fasttrack.training.evaluate.predict_outputs` aligns them). Given
    to :func:`check_agreement`, they spare predicting the held-out rows once more; what is compared, and how,
    does not change. A reference whose row count does not match the rows is ignored.
    """

    predictions: np.ndarray[Any, Any]
    proba: np.ndarray[Any, Any] | None = None
    labels: Sequence[Any] | None = None


@dataclass(frozen=True)
class ConversionResult:
    """The outcome of converting (and, through :func:`export`, checking) a fitted pipeline.

    ``onnx`` holds the serialised model when the conversion produced one; with ``status`` ``"disagrees"`` it
    is kept for inspection but must not be served. ``reason`` says why the status is not ``"ok"``.
    """

    onnx: bytes | None
    status: OnnxStatus
    reason: str | None = None
    agreement: Agreement | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the ONNX model was produced and (when checked) agrees with scikit-learn."""
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


# ---------------------------------------------------------------------------------------------- conversion
def convert(pipeline: Any, schema: Schema, task: Task) -> ConversionResult:
    """Convert a fitted FastTrack pipeline to ONNX; never raises (a failure is ``status="failed"``).

    The pipeline is converted as :func:`~fasttrack.training.pipeline.with_string_missing_categories` makes it,
    so a missing category is the string :data:`MISSING_CATEGORY` in the graph. See the module docstring for
    the graph's inputs and outputs.
    """
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # Converters warn about options and opsets they handle; the outcome is recorded, not printed.
            warnings.simplefilter("ignore")
            onnx_bytes = _convert(pipeline, schema, task)
    except Exception as exc:  # any converter failure means "serve the sklearn model", with the reason
        return ConversionResult(onnx=None, status="failed", reason=_reason(exc), seconds=time.perf_counter() - started)
    return ConversionResult(onnx=onnx_bytes, status="ok", seconds=time.perf_counter() - started)


def export(
    pipeline: Any,
    schema: Schema,
    task: Task,
    X_test: pd.DataFrame,  # noqa: N803
    *,
    reference: Reference | None = None,
) -> ConversionResult:
    """Convert ``pipeline`` and check it against scikit-learn on the prepared held-out rows ``X_test``.

    ``status`` is ``"ok"`` only when both models agree (:func:`check_agreement`, given ``reference`` when the
    pipeline's outputs on ``X_test`` are known already); ``"disagrees"`` keeps the bytes and the
    :class:`Agreement`; ``"failed"`` says why conversion or the check raised. Never raises.
    """
    started = time.perf_counter()
    result = convert(pipeline, schema, task)
    if result.onnx is None:
        return result
    try:
        agreement = check_agreement(result.onnx, pipeline, X_test, schema, task, reference=reference)
    except Exception as exc:  # a model ONNX Runtime cannot run is a failed conversion, not a failed training
        reason = f"the converted model does not run: {_reason(exc)}"
        return ConversionResult(onnx=None, status="failed", reason=reason, seconds=time.perf_counter() - started)
    seconds = time.perf_counter() - started
    if not agreement.ok:
        return ConversionResult(
            onnx=result.onnx, status="disagrees", reason=agreement.describe(), agreement=agreement, seconds=seconds
        )
    return ConversionResult(onnx=result.onnx, status="ok", agreement=agreement, seconds=seconds)


def export_to_folder(
    pipeline: Any,
    schema: Schema,
    task: Task,
    X_test: pd.DataFrame,  # noqa: N803
    folder: Path,
    *,
    reference: Reference | None = None,
) -> tuple[OnnxInfo, Path | None]:
    """:func:`export`, writing ``model.onnx`` into ``folder`` when it agrees; what to record, and the file.

    This is the registration hook: it never raises, so a model whose conversion fails is still registered
    (and served by scikit-learn), with the reason in its metadata and run tags.
    """
    started = time.perf_counter()
    try:
        result = export(pipeline, schema, task, X_test, reference=reference)
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


def run_tags(info: OnnxInfo) -> dict[str, str]:
    """The run tags that record an export: ``fasttrack.onnx`` (status) and ``fasttrack.onnx.reason``."""
    tags: dict[str, str] = {TAG_ONNX: info.status}
    if info.reason:
        tags[TAG_ONNX_REASON] = info.reason[:5000]
    return tags


def _reason(exc: BaseException) -> str:
    """An exception as one line of at most 500 characters (converter errors can dump whole graphs)."""
    text = " ".join(str(exc).split())
    if len(text) > 500:
        text = text[:497] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _convert(pipeline: Any, schema: Schema, task: Task) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    from fasttrack.training.pipeline import MODEL_STEP

    prepared = _graph_pipeline(pipeline)
    estimator = prepared.named_steps[MODEL_STEP]
    if _needs_registered_converters(estimator):
        _register_converters()
    initial_types = [
        (f.name, StringTensorType([None, 1]) if f.kind == "categorical" else FloatTensorType([None, 1]))
        for f in schema.features
    ]
    options: dict[int, dict[str, Any]] = {}
    classes: list[Any] | None = None
    if task == "classification":
        classes = np.asarray(estimator.classes_).tolist()
        options[id(estimator)] = {"zipmap": False}
    onnx_model = convert_sklearn(
        prepared,
        name="fasttrack",
        initial_types=initial_types,
        target_opset=dict(TARGET_OPSET),
        options=options,
        custom_conversion_functions=_custom_converters(),
    )
    if len(onnx_model.graph.output) != (2 if task == "classification" else 1):
        outputs = [o.name for o in onnx_model.graph.output]
        raise RuntimeError(f"unexpected outputs {outputs} for a {task} model")
    # skl2onnx makes input names safe identifiers ("education-num" -> "education_num"): the features are
    # recorded in input order, so the runtime feeds each feature to its input whatever it is called.
    if len(onnx_model.graph.input) != len(schema.features):
        raise RuntimeError(f"the graph has {len(onnx_model.graph.input)} inputs for {len(schema.features)} features")
    metadata = {META_FEATURES: json.dumps([f.name for f in schema.features])}
    if classes is not None:
        metadata[META_CLASSES] = json.dumps(classes)
        _add_label_index(onnx_model, classes)
    for key, value in metadata.items():
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, value
    data: bytes = onnx_model.SerializeToString()
    return data


def _graph_pipeline(pipeline: Any) -> Any:
    """The pipeline as the graph computes it, categorical missing values being :data:`MISSING_CATEGORY`.

    That is :func:`~fasttrack.training.pipeline.with_string_missing_categories`, whose categorical imputer
    then replaces ``MISSING_CATEGORY`` with ``MISSING_CATEGORY``: an identity, left out of the graph. Without
    it, the one-hot encoder is the first step of its part, so skl2onnx encodes each categorical input on its
    own instead of concatenating every string column into one tensor, imputing it and taking it apart again
    (string copies that made a graph with eight categorical features four times slower).
    """
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    from fasttrack.training.pipeline import CATEGORICAL_PART, PREPROCESS_STEP, with_string_missing_categories

    prepared = with_string_missing_categories(pipeline)
    preprocess = prepared.named_steps[PREPROCESS_STEP]
    parts = []
    for name, transformer, columns in preprocess.transformers_:
        part = transformer
        if name == CATEGORICAL_PART and isinstance(transformer, Pipeline) and len(transformer.steps) == 2:
            imputer, encoder = transformer.steps[0][1], transformer.steps[1][1]
            identity = (
                isinstance(imputer, SimpleImputer)
                and imputer.strategy == "constant"
                and imputer.missing_values == imputer.fill_value == MISSING_CATEGORY
            )
            if identity and isinstance(encoder, OneHotEncoder):
                part = encoder
        parts.append((name, part, columns))
    preprocess.transformers_ = parts
    return prepared


def _add_label_index(onnx_model: Any, classes: list[Any]) -> None:
    """Add an output with each row's label as its index in ``classes`` (-1 for a label not among them).

    The index is what batch scoring needs (a dictionary-encoded column) and costs far less than turning a
    million label strings into Python objects; ONNX Runtime computes only the outputs asked for.
    """
    from onnx import TensorProto, helper

    label = onnx_model.graph.output[0]
    codes = list(range(len(classes)))
    if label.type.tensor_type.elem_type == TensorProto.STRING:
        keys: dict[str, Any] = {"keys_strings": [str(c) for c in classes]}
    else:
        keys = {"keys_int64s": [int(c) for c in classes]}
    node = helper.make_node(
        "LabelEncoder",
        [label.name],
        [LABEL_INDEX],
        name="fasttrack_label_index",
        domain="ai.onnx.ml",
        values_int64s=codes,
        default_int64=-1,
        **keys,
    )
    onnx_model.graph.node.append(node)
    onnx_model.graph.output.append(helper.make_tensor_value_info(LABEL_INDEX, TensorProto.INT64, [None]))
    # LabelEncoder takes keys_* / values_* from version 2 of the ONNX-ML domain; the converters may have
    # needed only version 1. Versions 2 and 3 keep every version 1 operator's meaning.
    imports = [entry for entry in onnx_model.opset_import if entry.domain == "ai.onnx.ml"]
    if imports:
        imports[0].version = max(imports[0].version, 2)
    else:
        onnx_model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 2))


_registered = threading.Lock()
_done: list[bool] = []


def _register_converters() -> None:
    """Tell skl2onnx about XGBoost's estimators and FastTrack's wrapper (once per process).

    skl2onnx looks converters up by estimator type in its registry; these types are not skl2onnx's, so
    registering them adds entries without changing how any other model converts.
    """
    with _registered:
        if _done:
            return
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from skl2onnx import update_registered_converter
        from skl2onnx.common.shape_calculator import (
            calculate_linear_classifier_output_shapes,
            calculate_linear_regressor_output_shapes,
        )
        from xgboost import XGBClassifier, XGBRegressor

        from fasttrack.training.estimators import LabelEncodedClassifier

        classifier_options = {"zipmap": [True, False, "columns"], "nocl": [True, False]}
        update_registered_converter(
            XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=classifier_options,
        )
        update_registered_converter(
            XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
        )
        update_registered_converter(
            LabelEncodedClassifier,
            "FastTrackLabelEncodedClassifier",
            _label_encoded_shapes,
            _convert_label_encoded,
            options=classifier_options,
        )
        _done.append(True)


def _needs_registered_converters(estimator: Any) -> bool:
    """Whether converting ``estimator`` needs :func:`_register_converters` (which imports xgboost and
    onnxmltools, tens of milliseconds that scikit-learn's own estimators never need)."""
    from fasttrack.training.estimators import LabelEncodedClassifier, uses_xgboost

    return isinstance(estimator, LabelEncodedClassifier) or uses_xgboost(estimator)


def _custom_converters() -> dict[type, Callable[..., None]]:
    """Converters used for this conversion only: skl2onnx's HGB converters with integer attributes."""
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    return {
        model: _integer_attributes(get_converter(sklearn_operator_name_map[model]))
        for model in (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
    }


def _integer_attributes(converter: Callable[..., None]) -> Callable[..., None]:
    """``converter``, with boolean node attribute values written as the 0/1 integers ONNX stores them as.

    The container's ``add_node`` is wrapped on this container instance only, for the duration of the call.
    """

    def convert(scope: Any, operator: Any, container: Any) -> None:
        add_node = container.add_node

        def add_node_with_integers(*args: Any, **attributes: Any) -> Any:
            return add_node(*args, **{name: _no_booleans(value) for name, value in attributes.items()})

        container.add_node = add_node_with_integers
        try:
            converter(scope, operator, container)
        finally:
            del container.add_node

    return convert


def _no_booleans(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, list | tuple) and any(isinstance(v, bool | np.bool_) for v in value):
        return [int(v) if isinstance(v, bool | np.bool_) else v for v in value]
    if isinstance(value, np.ndarray) and value.dtype == np.bool_:
        return value.astype(np.int64)
    return value


def _label_encoded_shapes(operator: Any) -> None:
    """Shapes of a LabelEncodedClassifier: labels of the original type, ``[N, k]`` float probabilities."""
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    n = operator.inputs[0].get_first_dimension()
    classes = np.asarray(operator.raw_operator.classes_)
    numeric = classes.dtype.kind in "biuf"
    operator.outputs[0].type = Int64TensorType([n]) if numeric else StringTensorType([n])
    operator.outputs[1].type = FloatTensorType([n, len(classes)])


def _convert_label_encoded(scope: Any, operator: Any, container: Any) -> None:
    """The inner estimator's graph (integer classes), then its label index mapped to the original labels."""
    from skl2onnx.algebra.onnx_operator import OnnxSubEstimator
    from skl2onnx.algebra.onnx_ops import OnnxIdentity, OnnxLabelEncoder

    model = operator.raw_operator
    opset = container.target_opset
    classes = np.asarray(model.classes_)
    inner = OnnxSubEstimator(model.estimator_, operator.inputs[0], op_version=opset, options={"zipmap": False})
    codes = list(range(len(classes)))
    if classes.dtype.kind in "biuf":
        labels = OnnxLabelEncoder(
            inner[0],
            keys_int64s=codes,
            values_int64s=[int(c) for c in classes],
            default_int64=-1,
            op_version=_ml_opset(container),
        )
    else:
        labels = OnnxLabelEncoder(
            inner[0],
            keys_int64s=codes,
            values_strings=[str(c) for c in classes],
            default_string="",
            op_version=_ml_opset(container),
        )
    labels = OnnxIdentity(labels, op_version=opset, output_names=[operator.outputs[0]])
    labels.add_to(scope, container)
    probabilities = OnnxIdentity(inner[1], op_version=opset, output_names=[operator.outputs[1]])
    probabilities.add_to(scope, container)


def _ml_opset(container: Any) -> int:
    return int(container.target_opset_any_domain("ai.onnx.ml"))


# ----------------------------------------------------------------------------------------------- agreement
def check_agreement(
    onnx_model: bytes | OnnxModel,
    pipeline: Any,
    X_test: pd.DataFrame,  # noqa: N803
    schema: Schema,
    task: Task,
    *,
    reference: Reference | None = None,
) -> Agreement:
    """Compare an ONNX model with the scikit-learn pipeline on prepared rows (``prepare_features`` output).

    Classifiers must predict identical labels on every row, and their probabilities must agree within
    :data:`PROBA_ATOL` (1e-4): ONNX Runtime computes in float32, whose rounding moves a probability by about
    1e-7, so 1e-4 leaves room for long sums while still catching a wrong tree or a misplaced category.
    Regressors agree when ``|onnx - sklearn| <= 1e-4 * max(|sklearn|, scale)`` on every row, ``scale`` being
    the mean absolute prediction: float32 carries about 7 significant digits, and a sum of a few hundred trees
    or one-hot terms loses one or two of them, so 1e-4 relative is a few hundred times the rounding error yet
    far below any difference a person would act on. The ``scale`` floor keeps predictions near zero from
    turning harmless absolute rounding into huge relative errors. The pipeline's side is ``reference`` when
    given (its outputs on ``X_test``, computed earlier), else predicted here.
    """
    model = onnx_model if isinstance(onnx_model, OnnxModel) else OnnxModel.load(onnx_model, schema)
    rows = len(X_test)
    if rows == 0:
        return Agreement(rows=0, mismatches=0, max_abs_diff=0.0, tolerance="no rows to compare")
    if reference is not None and len(reference.predictions) != rows:
        reference = None
    columns = {name: X_test[name].to_numpy() for name in schema.feature_names}
    onnx_labels, onnx_proba = model.predict(columns)
    expected = np.asarray(reference.predictions if reference is not None else pipeline.predict(X_test))
    if task == "regression":
        truth = expected.astype(np.float64).ravel()
        values = np.asarray(onnx_labels, dtype=np.float64).ravel()
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
    mismatches = int(np.count_nonzero(_as_objects(onnx_labels) != _as_objects(expected)))
    max_diff = 0.0
    if onnx_proba is not None and hasattr(pipeline, "predict_proba"):
        reference_proba = _reference_proba(pipeline, X_test, reference)
        # OnnxModel orders probabilities like its labels; the pipeline like its classes_.
        order = [model.labels.index(c) for c in _natives(pipeline.classes_)]
        diff = np.abs(np.asarray(onnx_proba, dtype=np.float64)[:, order] - reference_proba)
        max_diff = _finite_max(diff)
    return Agreement(
        rows=rows, mismatches=mismatches, max_abs_diff=max_diff, tolerance=f"probability atol {PROBA_ATOL:g}"
    )


def _reference_proba(pipeline: Any, X_test: pd.DataFrame, reference: Reference | None) -> np.ndarray[Any, Any]:  # noqa: N803
    """``pipeline.predict_proba(X_test)`` (columns in ``classes_`` order), taken from ``reference`` if it has it."""
    if reference is not None and reference.proba is not None and reference.labels is not None:
        labels = _natives(reference.labels)
        classes = _natives(pipeline.classes_)
        proba = np.asarray(reference.proba, dtype=np.float64)
        if proba.shape == (len(reference.predictions), len(labels)) and all(c in labels for c in classes):
            return proba[:, [labels.index(c) for c in classes]]
    return np.asarray(pipeline.predict_proba(X_test), dtype=np.float64)


def _finite_max(values: np.ndarray[Any, Any]) -> float:
    if values.size == 0:
        return 0.0
    top = float(np.max(values))
    return top if math.isfinite(top) else math.inf


def _as_objects(values: Any) -> np.ndarray[Any, Any]:
    return np.asarray(_natives(values), dtype=object)


def _natives(values: Any) -> list[Any]:
    return np.asarray(values).tolist()  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------------- runtime
class OnnxModel:
    """An exported FastTrack model in ONNX Runtime: columns or records in, labels and probabilities out.

    One session per model, one intra-op and one inter-op thread, sequential execution: a served model runs
    one request per worker thread and must not fight the web workers for cores. ``run`` on a session is
    thread-safe, so one ``OnnxModel`` serves every thread of a process.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        schema: Schema,
        labels: Sequence[Label] | None,
        *,
        category_codes: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.session = session
        self.schema = schema
        self._features: list[FeatureSchema] = list(schema.features)
        inputs = [i.name for i in session.get_inputs()]
        meta = session.get_modelmeta().custom_metadata_map
        fed: list[str] = json.loads(meta[META_FEATURES]) if META_FEATURES in meta else [f.name for f in self._features]
        names = [f.name for f in self._features]
        if len(fed) != len(inputs) or sorted(fed) != sorted(names):
            raise ValueError(f"the ONNX model's inputs {fed} are not the schema's features {names}")
        #: The graph input each feature is fed to.
        self.input_names: dict[str, str] = dict(zip(fed, inputs, strict=True))
        self._renamed = any(feature != name for feature, name in self.input_names.items())
        #: Categorical features fed as int64 codes (see :meth:`load`): feature -> category -> code; a value
        #: that is not a key is an unknown category, code -1. ``None`` when every categorical input is text.
        self.category_codes: dict[str, dict[str, int]] | None = None
        if category_codes is not None:
            by_input = {name: feature for feature, name in self.input_names.items()}
            self.category_codes = {
                by_input[name]: {category: code for code, category in enumerate(categories)}
                for name, categories in category_codes.items()
            }
        outputs = [o.name for o in session.get_outputs()]
        self.is_classifier = len(outputs) >= 2
        # Classifiers: label, probabilities and (graphs exported here) the label's index in the classes.
        self._index_output = LABEL_INDEX if LABEL_INDEX in outputs else None
        graph_outputs = [o for o in outputs if o != LABEL_INDEX]
        self._outputs = (
            [self._index_output, graph_outputs[1]] if self.is_classifier and self._index_output else graph_outputs[:2]
        )
        classes: list[Any] = json.loads(meta[META_CLASSES]) if META_CLASSES in meta else []
        if self.is_classifier and not classes:
            raise ValueError(f"the ONNX model does not list its classes ({META_CLASSES})")
        self.classes = classes
        self.labels: list[Any] = list(labels) if labels is not None else list(classes)
        if self.is_classifier:
            missing = [c for c in classes if c not in self.labels]
            if missing:
                raise ValueError(f"the ONNX model's classes {missing} are not among the labels {self.labels}")
        # Column j of the returned probabilities is label j: take the graph's column for it (or zeros).
        self._proba_order = [classes.index(label) if label in classes else -1 for label in self.labels]
        self._identity_order = self._proba_order == list(range(len(classes)))
        self._label_dtype = _label_dtype(classes)
        #: The labels as an array of their own type, and each class's position among them.
        self.label_values = _label_array(self.labels)
        self._class_to_label = np.asarray([self.labels.index(c) for c in classes], dtype=np.int64)

    @classmethod
    def load(
        cls,
        source: str | Path | bytes,
        schema: Schema,
        labels: Sequence[Label] | None = None,
        *,
        categorical_codes: bool = False,
    ) -> OnnxModel:
        """Open an exported model (a path or the serialised bytes) for ``schema``'s features.

        ``labels`` fixes the order of the probability columns (default: the classes the graph records, the
        fitted classifier's ``classes_``). With ``categorical_codes`` the categorical inputs take int64 codes
        instead of text where the graph allows it (see :attr:`category_codes`): for batch scoring, where
        passing millions of strings into ONNX Runtime costs more than the model itself.
        """
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: no warnings printed at load or per request
        # Threads spin-waiting for work cost CPU the web workers need; a single thread never waits anyway.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        model: str | bytes = source if isinstance(source, bytes) else str(source)
        codes = None
        if categorical_codes:
            data = model if isinstance(model, bytes) else Path(model).read_bytes()
            variant = _with_category_codes(data, schema)
            if variant is not None:
                model, codes = variant
        session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        return cls(session, schema, labels, category_codes=codes)

    # -- inputs ------------------------------------------------------------------------------------------
    def feeds(self, columns: Mapping[str, Any], rows: int | None = None) -> dict[str, np.ndarray[Any, Any]]:
        """The input tensors for feature ``columns`` (name -> values); an absent feature is all missing.

        Numeric and boolean values become float32 ``[n, 1]`` (``None``/NaN missing; ``True``/``False`` 1/0);
        categorical values become strings ``[n, 1]`` with :data:`MISSING_CATEGORY` for ``None``, NaN and empty
        text (numbers as their category text: ``3`` and ``3.0`` are ``"3"``, booleans ``"true"``/``"false"``).
        """
        n = rows
        if n is None:
            present = [columns[f.name] for f in self._features if f.name in columns]
            n = len(present[0]) if present else 0
        feeds: dict[str, np.ndarray[Any, Any]] = {}
        for feature in self._features:
            values = columns.get(feature.name)
            if feature.kind == "categorical":
                tensor = categorical_tensor(values, n)
                if self.category_codes is not None:
                    codes = self.category_codes[feature.name]
                    tensor = np.asarray([codes.get(v, -1) for v in tensor.ravel().tolist()], np.int64).reshape(-1, 1)
                feeds[feature.name] = tensor
            else:
                feeds[feature.name] = numeric_tensor(values, n)
        return feeds

    def records_to_columns(self, records: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
        """Columns of the features from records (an absent key is a missing value)."""
        return {f.name: [record.get(f.name) for record in records] for f in self._features}

    # -- prediction --------------------------------------------------------------------------------------
    def run(
        self, feeds: Mapping[str, np.ndarray[Any, Any]]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
        """Run the graph on ready input tensors (see :meth:`feeds`), keyed by feature name.

        Returns ``(labels or values, probabilities or None)``. Labels come back as the original labels
        (``object`` array of ``str`` for text labels, ``int64``, ``bool`` or ``float64`` for numeric ones);
        regression values as float32; probabilities as float32 ``[n, len(labels)]`` ordered like
        :attr:`labels`.
        """
        if self.is_classifier and self._index_output is not None:
            codes, proba = self.run_codes(feeds)
            return self.label_values[codes], proba
        outputs = self.session.run(self._outputs, self._inputs(feeds))
        if not self.is_classifier:
            return np.asarray(outputs[0]).reshape(-1), None
        labels = np.asarray(outputs[0]).reshape(-1)
        if self._label_dtype is not None:
            labels = labels.astype(self._label_dtype)
        return labels, self._proba(outputs[1])

    def run_codes(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """A classifier's predictions as positions in :attr:`labels` (int64), and the probabilities.

        Cheaper than :meth:`run` for many rows: no label object is made per row (``label_values[codes]`` are
        the labels, and the codes make a dictionary-encoded column as they are).
        """
        if not self.is_classifier:
            raise TypeError("a regressor has no label codes")
        if self._index_output is None:
            labels, proba = self.run(feeds)
            position = {label: i for i, label in enumerate(self.labels)}
            return np.asarray([position[label] for label in labels.tolist()], dtype=np.int64), proba  # type: ignore[return-value]
        index, proba = self.session.run(self._outputs, self._inputs(feeds))
        index = np.asarray(index).reshape(-1)
        if index.size and int(index.min()) < 0:
            raise ValueError("the ONNX model predicted a label that is not among its classes")
        return self._class_to_label[index], self._proba(proba)

    def _inputs(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        """Feeds keyed by feature name, keyed by the graph's input names instead."""
        if not self._renamed:
            return dict(feeds)
        return {self.input_names[name]: values for name, values in feeds.items()}

    def _proba(self, raw: Any) -> np.ndarray[Any, Any]:
        proba = np.asarray(raw, dtype=np.float32)
        return proba if self._identity_order else _reorder(proba, self._proba_order)

    def predict(
        self, columns: Mapping[str, np.ndarray[Any, Any] | Sequence[Any]]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
        """Predictions for feature columns (name -> values): see :meth:`feeds` and :meth:`run`."""
        return self.run(self.feeds(columns))

    def predict_records(
        self, records: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
        """Predictions for already validated records (dicts of feature values, as parsed from JSON)."""
        return self.run(self.feeds(self.records_to_columns(records), rows=len(records)))


def _with_category_codes(data: bytes, schema: Schema) -> tuple[bytes, dict[str, list[str]]] | None:
    """The graph with each categorical input taking the index of its category instead of the text.

    Possible when every categorical input feeds one ONNX-ML ``OneHotEncoder`` and nothing else (graphs
    exported here): its ``cats_strings`` become ``cats_int64s`` ``0..k-1`` and the input becomes int64, which
    encodes code ``i`` exactly as it encoded category ``i`` (and -1, like an unknown text, as all zeros).
    Returns the new graph and each changed input's categories in code order; ``None`` when not possible.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(data)
    graph = model.graph
    meta = {entry.key: entry.value for entry in model.metadata_props}
    fed = json.loads(meta.get(META_FEATURES, "null")) or [f.name for f in schema.features]
    kinds = {f.name: f.kind for f in schema.features}
    inputs = {feature: graph.input[i].name for i, feature in enumerate(fed)}
    categorical = [inputs[f] for f in fed if kinds.get(f) == "categorical"]
    if not categorical:
        return None
    consumers: dict[str, list[Any]] = {name: [] for name in categorical}
    for node in graph.node:
        for name in node.input:
            if name in consumers:
                consumers[name].append(node)
    categories: dict[str, list[str]] = {}
    for name, nodes in consumers.items():
        if len(nodes) != 1 or nodes[0].op_type != "OneHotEncoder" or nodes[0].domain != "ai.onnx.ml":
            return None
        attributes = {a.name: a for a in nodes[0].attribute}
        if "cats_strings" not in attributes:
            return None
        categories[name] = [c.decode("utf-8") for c in attributes["cats_strings"].strings]
    for name, nodes in consumers.items():
        node = nodes[0]
        kept = [a for a in node.attribute if a.name != "cats_strings"]
        del node.attribute[:]
        node.attribute.extend([*kept, helper.make_attribute("cats_int64s", list(range(len(categories[name]))))])
    for graph_input in graph.input:
        if graph_input.name in categories:
            graph_input.type.tensor_type.elem_type = TensorProto.INT64
    return model.SerializeToString(), categories


def _label_dtype(classes: list[Any]) -> type | None:
    """The numpy type labels come back as, when the graph's int64 or string labels need converting."""
    if not classes:
        return None
    if all(isinstance(c, bool) for c in classes):
        return np.bool_
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return None  # int64 already
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
        return np.float64
    return None  # strings: object arrays of str already


def _label_array(labels: list[Any]) -> np.ndarray[Any, Any]:
    """Labels as a numpy array of their own type (bool, int64, float64, else Python objects)."""
    if labels and all(isinstance(v, bool) for v in labels):
        return np.asarray(labels, dtype=np.bool_)
    if labels and all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        return np.asarray(labels, dtype=np.int64)
    if labels and all(isinstance(v, int | float) and not isinstance(v, bool) for v in labels):
        return np.asarray(labels, dtype=np.float64)
    array = np.empty(len(labels), dtype=object)
    array[:] = labels
    return array


def _reorder(proba: np.ndarray[Any, Any], order: list[int]) -> np.ndarray[Any, Any]:
    result = np.zeros((proba.shape[0], len(order)), dtype=proba.dtype)
    for column, source in enumerate(order):
        if source >= 0:
            result[:, column] = proba[:, source]
    return result


def numeric_tensor(values: Any, rows: int) -> np.ndarray[Any, Any]:
    """A numeric or boolean feature's values as the float32 ``[rows, 1]`` input (missing as NaN)."""
    if values is None:
        return np.full((rows, 1), np.nan, dtype=np.float32)
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float32, copy=False).reshape(-1, 1)
    try:
        array = np.asarray(values, dtype=np.float32)  # None -> NaN, True -> 1, "2.5" -> 2.5
    except (TypeError, ValueError):
        array = np.asarray([_number(v) for v in values], dtype=np.float32)
    return array.reshape(-1, 1)


def _number(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "false"):
            return 1.0 if text == "true" else 0.0
        return float(text) if text else math.nan
    return float(value)


def categorical_tensor(values: Any, rows: int) -> np.ndarray[Any, Any]:
    """A categorical feature's values as the string ``[rows, 1]`` input (missing as MISSING_CATEGORY)."""
    if values is None:
        return np.full((rows, 1), MISSING_CATEGORY, dtype=object)
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        values = values.tolist()
    array = np.empty(len(values), dtype=object)
    array[:] = [MISSING_CATEGORY if (text := category_text(v)) is None else text for v in values]
    return array.reshape(-1, 1)
