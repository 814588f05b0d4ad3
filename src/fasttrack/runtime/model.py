"""A loaded model: any input validated by the feature contract, predicted through its runtime.

:class:`Model` is what ``fasttrack.load("models:/adult@champion")`` returns: ``predict`` and ``predict_proba``
take a pandas frame, a list of records (or one record) or an Arrow table, turn it into the model's input with the
matching driver (:mod:`fasttrack.features`) and predict with the runtime the model was opened with
(:func:`~fasttrack.runtime.select.open_runtime`). The same input gives the same answer as the server and
``fasttrack predict``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from fasttrack.config import ExtraFields, ResolvedTask
from fasttrack.data.schema import Label, Schema
from fasttrack.errors import ConfigError, SchemaValidationError
from fasttrack.registry.model_folder import LoadedModel, ModelMetadata
from fasttrack.runtime.base import Columns, Prediction, Runtime

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from fasttrack.registry.resolve import ResolvedModel

#: What ``Model.predict`` takes: a frame, records (or one record), or an Arrow table or record batch.
ModelData = Any


class Model:
    """A model ready to predict (see the module docstring). ``labels`` order the probability columns.

    ``source`` is where it came from (the URI asked for and, for a registered model, its name, version and
    alias); without one, the model is its folder.
    """

    def __init__(self, folder: LoadedModel, runtime: Runtime, source: ResolvedModel | None = None) -> None:
        from fasttrack.registry.resolve import ResolvedModel

        self.folder = folder
        self.runtime = runtime
        self.source = source or ResolvedModel(uri=str(folder.path), path=folder.path)

    def __repr__(self) -> str:
        version = f" version {self.version}" if self.version else ""
        return f"<Model {self.name}{version} ({self.task}, {self.runtime.name})>"

    @property
    def name(self) -> str:
        """The registered model name (or the name recorded in the folder)."""
        return self.source.name or self.folder.metadata.name

    @property
    def version(self) -> str | None:
        """The registered version (``None`` for a folder used directly)."""
        return self.source.version

    @property
    def schema(self) -> Schema:
        """The training schema: the features, in model input order, and the target."""
        return self.folder.schema

    @property
    def metadata(self) -> ModelMetadata:
        """Everything recorded about the model at training: metrics, config, data lineage, libraries."""
        return self.folder.metadata

    @property
    def task(self) -> ResolvedTask:
        """``classification`` or ``regression``."""
        return self.folder.metadata.task

    @property
    def labels(self) -> list[Label] | None:
        """Class labels in probability column order (classifiers), else ``None``."""
        return self.runtime.labels

    def predict(self, data: ModelData, *, extra: ExtraFields = "ignore") -> np.ndarray[Any, Any]:
        """Predicted labels (their own type) or values, one per row of ``data``.

        Raises :class:`~fasttrack.errors.SchemaValidationError` naming every value a feature cannot take and every
        absent feature the training data always had; records may carry other fields (``extra="refuse"`` refuses
        fields the model never saw, as the server's ``/predict`` does).
        """
        return self._predict(data, probabilities=False, extra=extra).values

    def predict_proba(self, data: ModelData, *, extra: ExtraFields = "ignore") -> np.ndarray[Any, Any]:
        """Class probabilities, one row per row of ``data`` and one column per entry of :attr:`labels`.

        Raises :class:`~fasttrack.errors.ConfigError` for a regressor, and what :meth:`predict` raises.
        """
        if self.labels is None:
            raise ConfigError(f"{self.name} is a regressor: it has no class probabilities")
        probabilities = self._predict(data, probabilities=True, extra=extra).probabilities
        assert probabilities is not None  # a classifier asked for them
        return np.asarray(probabilities, dtype=np.float64)

    def _predict(self, data: ModelData, *, probabilities: bool, extra: ExtraFields) -> Prediction:
        columns, rows = self.columns(data, extra=extra)
        return self.runtime.predict(columns, rows, probabilities=probabilities)

    def columns(self, data: ModelData, *, extra: ExtraFields = "ignore") -> tuple[Columns, int]:
        """``data`` as the model's input (see :meth:`predict`), and its number of rows."""
        pandas = sys.modules.get("pandas")
        if pandas is not None and isinstance(data, pandas.DataFrame):
            return _frame_columns(data, self.schema)
        pyarrow = sys.modules.get("pyarrow")
        if pyarrow is not None and isinstance(data, pyarrow.Table | pyarrow.RecordBatch):
            return _arrow_columns(data, self.schema)
        if isinstance(data, Mapping):
            data = [data]
        if isinstance(data, Sequence) and not isinstance(data, str | bytes):
            from fasttrack.features.records import RecordDriver

            model_input = RecordDriver(self.schema).validate(data, extra=extra)
            return model_input.columns, model_input.rows
        raise ConfigError(
            f"cannot predict from {type(data).__name__}: give a pandas DataFrame, records (dicts) or an Arrow table"
        )


def _frame_columns(frame: pd.DataFrame, schema: Schema) -> tuple[Columns, int]:
    from fasttrack.features.frames import frame_input

    prepared = frame_input(frame, schema)
    if prepared.violations:
        raise SchemaValidationError(prepared.violations)
    return prepared.columns, prepared.rows


def _arrow_columns(table: pa.Table | pa.RecordBatch, schema: Schema) -> tuple[Columns, int]:
    from fasttrack.features.arrow import ArrowDriver

    batch = ArrowDriver(schema, table.column_names).normalize(table)
    return batch.features(), batch.rows
