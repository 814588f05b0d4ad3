"""The ONNX Runtime runtime: an exported model's graph run on validated columns, without pandas or scikit-learn.

The graph (see :mod:`fasttrack.export.onnx`) has one input per feature, in schema order: ``float`` ``[N, 1]`` for
numeric and boolean features (NaN missing), ``string`` ``[N, 1]`` for categorical ones (:data:`MISSING_CATEGORY`
missing, as ONNX string tensors cannot hold NaN). skl2onnx makes input names identifiers, so the graph records
which feature feeds which input (metadata ``fasttrack.features``). Classifiers output their labels, the
probabilities as a plain ``[N, k]`` float tensor in ``classes_`` order (metadata ``fasttrack.classes``) and each
label's index in the classes (``fasttrack_label_index``); regressors output ``[N, 1]`` floats.

One session per model, one intra-op and one inter-op thread, sequential execution: a served model runs one request
per worker thread and must not fight the web workers for cores; ``run`` on a session is thread-safe, so one runtime
serves every thread of a process. Batch scoring, where one caller predicts big batches, may ask for ``threads``:
the batch's slices (below) then run on that many threads at once, each an ordinary call on the same one-thread
session, so every row is computed exactly as in the server. (ONNX Runtime's own intra-op threads would split a
tree ensemble's trees between them and sum them in another order: probabilities move by a few 1e-7, and a random
forest's label flips on rows where its votes tie.) A tree ensemble's trees are nine tenths of a slice's time.
Where the graph allows it (``categorical_codes``,
the default) it is rewritten at load to take each category as its integer code: ONNX Runtime's string tensors and
string one-hot encoders cost more than the integer ones, a third of a one-row call of the adult model and more
than the model itself for files.
Big batches are run in slices sized for the CPU cache (:func:`run_rows`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import numpy as np

from fasttrack.config import ResolvedTask
from fasttrack.data.schema import FeatureSchema, Label, Schema
from fasttrack.features.columns import CategoricalColumn
from fasttrack.runtime.base import Columns, Prediction

if TYPE_CHECKING:
    import onnxruntime as ort

_T = TypeVar("_T")

#: What a missing categorical value is in the graph: :data:`fasttrack.training.pipeline.MISSING_CATEGORY`,
#: repeated here (a test keeps the two equal) so that running a graph never imports scikit-learn.
MISSING_CATEGORY: Final = "__missing__"
#: Metadata the exported graph carries about itself: the feature fed to each input, in input order, and the
#: classifier's classes in probability column order.
META_FEATURES: Final = "fasttrack.features"
META_CLASSES: Final = "fasttrack.classes"
#: The extra output of classifier graphs: each row's label as its index in the classes.
LABEL_INDEX: Final = "fasttrack_label_index"
#: Rows per ONNX Runtime call: as many as keep the graph's widest intermediate tensor (about one float per numeric
#: feature and per category) near RUN_FLOATS floats, a size that stays in the CPU cache, within
#: RUN_ROWS_MIN..RUN_ROWS_MAX. Measured: the sample's 2-feature logistic model runs fastest with 64 k rows per
#: call (per-call overhead), the adult-like one-hot pipeline (~110 columns) with 2 k (cache misses).
RUN_FLOATS: Final = 1 << 18
RUN_ROWS_MIN: Final = 1 << 10
RUN_ROWS_MAX: Final = 1 << 16


class OnnxRuntime:
    """An exported FastTrack model in ONNX Runtime (see the module docstring); open it with :meth:`open`."""

    name: Literal["onnx"] = "onnx"

    def __init__(
        self,
        session: ort.InferenceSession,
        schema: Schema,
        task: ResolvedTask,
        labels: Sequence[Label] | None,
        *,
        category_codes: Mapping[str, Sequence[str]] | None = None,
        threads: int = 1,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        self.session = session
        #: How many of a batch's slices run at once (see the module docstring).
        self.threads = threads
        self.schema = schema
        self.task: ResolvedTask = task
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
        #: Categorical features fed as int64 codes (see :meth:`open`): feature -> category -> code; a value that
        #: is not a key is an unknown category, code -1. ``None`` when every categorical input is text.
        self.category_codes: dict[str, dict[str, int]] | None = None
        if category_codes is not None:
            by_input = {name: feature for feature, name in self.input_names.items()}
            self.category_codes = {
                by_input[name]: {category: code for code, category in enumerate(categories)}
                for name, categories in category_codes.items()
            }
        outputs = [o.name for o in session.get_outputs()]
        classifier = len(outputs) >= 2
        if classifier != (task == "classification"):
            raise ValueError(f"the ONNX model has {len(outputs)} outputs, which does not fit a {task} model")
        # Classifiers: label, probabilities and (graphs exported here) the label's index in the classes.
        self._index_output = LABEL_INDEX if LABEL_INDEX in outputs else None
        graph_outputs = [o for o in outputs if o != LABEL_INDEX]
        self._outputs = (
            [self._index_output, graph_outputs[1]] if classifier and self._index_output else graph_outputs[:2]
        )
        classes: list[Any] = json.loads(meta[META_CLASSES]) if META_CLASSES in meta else []
        if classifier and not classes:
            raise ValueError(f"the ONNX model does not list its classes ({META_CLASSES})")
        #: The classifier's classes in the graph's probability order.
        self.classes = classes
        self.labels: list[Label] | None = (
            (list(labels) if labels is not None else list(classes)) if classifier else None
        )
        ordered = self.labels or []
        missing = [c for c in classes if c not in ordered]
        if missing:
            raise ValueError(f"the ONNX model's classes {missing} are not among the labels {ordered}")
        # Column j of the returned probabilities is label j: take the graph's column for it (or zeros).
        self._proba_order = [classes.index(label) if label in classes else -1 for label in ordered]
        self._identity_order = self._proba_order == list(range(len(classes)))
        self._label_dtype = _label_dtype(classes)
        #: The labels as an array of their own type, and each class's position among them.
        self.label_values = _label_array(ordered)
        self._class_to_label = np.asarray([ordered.index(c) for c in classes], dtype=np.int64)
        self._kinds = [(f.name, f.kind == "categorical") for f in self._features]
        self.run_rows = run_rows(self)

    @classmethod
    def open(
        cls,
        source: str | Path | bytes,
        schema: Schema,
        task: ResolvedTask,
        labels: Sequence[Label] | None = None,
        *,
        categorical_codes: bool = True,
        threads: int = 1,
    ) -> OnnxRuntime:
        """Open an exported model (a path or the serialised bytes) for ``schema``'s features.

        ``labels`` fixes the order of the probability columns (default: the classes the graph records, the fitted
        classifier's ``classes_``). With ``categorical_codes`` (the default) the categorical inputs take int64 codes
        instead of text where the graph allows it (see :attr:`category_codes`); without, they take the text as
        exported. ``threads`` is how many slices of a big batch run at once: 1 (the default) for the server, where
        each request is one call on a web worker's thread; more for batch scoring (see the module docstring). ONNX
        Runtime's own errors propagate.
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
        if categorical_codes and any(f.kind == "categorical" for f in schema.features):
            data = model if isinstance(model, bytes) else Path(model).read_bytes()
            variant = _with_category_codes(data, schema)
            if variant is not None:
                model, codes = variant
        session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        return cls(session, schema, task, labels, category_codes=codes, threads=threads)

    # -- inputs ----------------------------------------------------------------------------------------------
    def feeds(self, columns: Columns, rows: int) -> dict[str, np.ndarray[Any, Any]]:
        """The graph's input tensors for validated ``columns`` (an absent feature is all missing), keyed by feature.

        Numbers become float32 ``[n, 1]``; categories ``[n, 1]`` text with :data:`MISSING_CATEGORY` for missing,
        or int64 codes when the graph takes codes.
        """
        feeds: dict[str, np.ndarray[Any, Any]] = {}
        for name, categorical in self._kinds:
            column = columns.get(name)
            if categorical:
                feeds[name] = self._categories(name, column, rows).reshape(-1, 1)
            elif column is None:
                feeds[name] = np.full((rows, 1), np.nan, dtype=np.float32)
            else:
                feeds[name] = np.asarray(column).astype(np.float32, copy=False).reshape(-1, 1)
        return feeds

    def _categories(self, name: str, column: Any, rows: int) -> np.ndarray[Any, Any]:
        codes = self.category_codes
        if codes is None:
            if column is None:
                return np.full(rows, MISSING_CATEGORY, dtype=object)
            if isinstance(column, CategoricalColumn):
                return column.values(MISSING_CATEGORY)
            text = np.empty(len(column), dtype=object)
            text[:] = [value if type(value) is str else MISSING_CATEGORY for value in column.tolist()]
            return text
        lookup = codes[name]
        missing = lookup.get(MISSING_CATEGORY, -1)
        if column is None:
            return np.full(rows, missing, np.int64)
        if isinstance(column, CategoricalColumn):
            # One dictionary lookup per distinct category, then integer indexing for the rows.
            table = np.asarray([lookup.get(category, -1) for category in column.categories], dtype=np.int64)
            return column.mapped(table, missing)
        return np.asarray(
            [lookup.get(value, -1) if type(value) is str else missing for value in column.tolist()], dtype=np.int64
        )

    # -- prediction --------------------------------------------------------------------------------------------
    def predict(self, columns: Columns, rows: int, *, probabilities: bool = False) -> Prediction:
        """Predictions for ``rows`` rows of validated ``columns``: labels (with codes and, when asked, float32
        probabilities ordered like :attr:`labels`) or float32 values."""
        feeds = self.feeds(columns, rows)
        step = self.run_rows
        parts = (
            [feeds]
            if rows <= step
            else [
                {name: values[start : start + step] for name, values in feeds.items()} for start in range(0, rows, step)
            ]
        )
        if self.labels is None:
            values = self._each(self._regress, parts)
            return Prediction(values[0] if len(values) == 1 else np.concatenate(values))
        outputs = self._each(self._classify, parts)
        codes = outputs[0][0] if len(outputs) == 1 else np.concatenate([c for c, _ in outputs])
        proba = outputs[0][1] if len(outputs) == 1 else np.concatenate([p for _, p in outputs])
        return Prediction(self.label_values[codes], proba if probabilities else None, codes)

    def _each(self, run: Callable[[Mapping[str, np.ndarray[Any, Any]]], _T], parts: list[dict[str, Any]]) -> list[_T]:
        """``run`` on every slice, in order: one after the other, or on :attr:`threads` threads at once."""
        if self.threads == 1 or len(parts) == 1:
            return [run(part) for part in parts]
        from concurrent.futures import ThreadPoolExecutor

        # A pool per batch: a batch of slices takes milliseconds to seconds, starting two threads microseconds,
        # and nothing outlives the call. ONNX Runtime releases the GIL while it computes.
        with ThreadPoolExecutor(min(self.threads, len(parts)), thread_name_prefix="fasttrack-onnx") as pool:
            return list(pool.map(run, parts))

    def _regress(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
        """A regressor's predicted values."""
        return np.asarray(self.session.run(self._outputs[:1], self._inputs(feeds))[0]).reshape(-1)

    def _classify(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """A classifier's predictions as positions in :attr:`labels` (int64), and the probabilities."""
        if self._index_output is None:  # a graph exported before the label index: map its labels
            raw, proba = self.session.run(self._outputs, self._inputs(feeds))
            labels = np.asarray(raw).reshape(-1)
            if self._label_dtype is not None:
                labels = labels.astype(self._label_dtype)
            position = {label: i for i, label in enumerate(self.labels or [])}
            codes = np.asarray([position[label] for label in labels.tolist()], dtype=np.int64)
            return codes, self._proba(proba)
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


def run_rows(runtime: OnnxRuntime) -> int:
    """Rows per ONNX Runtime call for ``runtime``: a power of two near ``RUN_FLOATS / width`` (see RUN_FLOATS).

    The width is the number of columns the graph's preprocessing makes: one per numeric feature, one per category
    (plus one) of each categorical feature.
    """
    width = 0
    for feature in runtime.schema.features:
        if feature.kind != "categorical":
            width += 1
        elif runtime.category_codes is not None and feature.name in runtime.category_codes:
            width += len(runtime.category_codes[feature.name]) + 1
        else:
            width += len(feature.categories or ()) + 1
    rows = RUN_FLOATS // max(width, 1)
    return min(max(1 << (rows.bit_length() - 1) if rows else 0, RUN_ROWS_MIN), RUN_ROWS_MAX)


def _with_category_codes(data: bytes, schema: Schema) -> tuple[bytes, dict[str, list[str]]] | None:
    """The graph with each categorical input taking the index of its category instead of the text.

    Possible when every categorical input feeds one ONNX-ML ``OneHotEncoder`` and nothing else (graphs exported
    here): its ``cats_strings`` become ``cats_int64s`` ``0..k-1`` and the input becomes int64, which encodes code
    ``i`` exactly as it encoded category ``i`` (and -1, like an unknown text, as all zeros). Returns the new graph
    and each changed input's categories in code order; ``None`` when not possible.
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
