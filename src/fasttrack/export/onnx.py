"""Exporting a fitted pipeline to ONNX: the conversion, and the converter problems solved on the way.

:func:`convert` turns a fitted FastTrack pipeline into the graph :mod:`fasttrack.runtime.onnx` runs: one input
per feature in schema order (``float`` ``[N, 1]`` for numeric and boolean features, NaN missing, the pipeline's
imputer inside the graph; ``string`` ``[N, 1]`` for categorical ones, ``__missing__`` missing, because ONNX
string tensors cannot hold NaN), the feature fed to each input and the classifier's classes recorded as
metadata (skl2onnx makes input names identifiers: ``education-num`` becomes ``education_num``), labels as the
original values, ``[N, k]`` float probabilities (no ZipMap) and each label's index in the classes. Whether the
graph may stand in for the pipeline is :mod:`fasttrack.export.check`'s to decide.

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
import threading
import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from fasttrack.data.schema import Schema
from fasttrack.runtime.onnx import LABEL_INDEX, META_CLASSES, META_FEATURES, MISSING_CATEGORY

#: Opsets of the exported graph: ones every converter here implements and ONNX Runtime >= 1.16 runs.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}

Task = Literal["classification", "regression"]


# ---------------------------------------------------------------------------------------------- conversion
def convert(pipeline: Any, schema: Schema, task: Task) -> bytes:
    """A fitted FastTrack pipeline as a serialised ONNX graph (see the module docstring); converters' own errors
    propagate (:mod:`fasttrack.export.check` records them as the reason the model has no graph).

    The pipeline is converted as :func:`~fasttrack.training.pipeline.with_string_missing_categories` makes it, so a
    missing category is the string ``__missing__`` in the graph.
    """
    with warnings.catch_warnings():
        # Converters warn about options and opsets they handle; the outcome is recorded, not printed.
        warnings.simplefilter("ignore")
        return _convert(pipeline, schema, task)


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
