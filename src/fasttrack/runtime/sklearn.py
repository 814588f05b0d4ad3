"""The scikit-learn runtime: the fitted pipeline, fed the exact frame it was fitted on.

The frame has the schema's features in order: ``float64`` numbers (NaN missing) and ``object`` text with
``np.nan`` missing (what scikit-learn's encoders were fitted on, never pandas' own ``str`` dtype). Probabilities are
reordered from the pipeline's ``classes_`` to the model's labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fasttrack.config import ResolvedTask
from fasttrack.data.schema import Label, Schema
from fasttrack.features.columns import CategoricalColumn
from fasttrack.runtime.base import Columns, Prediction, align_proba, natives

if TYPE_CHECKING:
    import pandas as pd


class SklearnRuntime:
    """A fitted FastTrack pipeline (see the module docstring). ``labels`` default to the pipeline's classes."""

    name: Literal["sklearn"] = "sklearn"

    def __init__(self, pipeline: Any, schema: Schema, task: ResolvedTask, labels: list[Label] | None = None) -> None:
        self.pipeline = pipeline
        self.schema = schema
        self.task: ResolvedTask = task
        self._names = schema.feature_names
        self._categorical = frozenset(f.name for f in schema.features if f.kind == "categorical")
        classifier = task == "classification"
        self.classes = natives(np.asarray(pipeline.classes_)) if classifier else None
        self.labels: list[Label] | None = (list(labels) if labels is not None else self.classes) if classifier else None

    def frame(self, columns: Columns, rows: int) -> pd.DataFrame:
        """The pipeline's input frame for validated ``columns`` (absent features all missing)."""
        import pandas as pd  # here: a model served through ONNX Runtime never needs pandas

        frame: dict[str, Any] = {}
        for name in self._names:
            column = columns.get(name)
            if name in self._categorical:
                values = (
                    np.full(rows, np.nan, dtype=object)
                    if column is None
                    else column.values(np.nan)
                    if isinstance(column, CategoricalColumn)
                    else column
                )
                frame[name] = pd.Series(values, dtype=object, copy=False)
            else:
                frame[name] = np.full(rows, np.nan) if column is None else column
        return pd.DataFrame(frame, copy=False)

    def predict(self, columns: Columns, rows: int, *, probabilities: bool = False) -> Prediction:
        """``pipeline.predict`` (and ``predict_proba`` when asked) on the frame of ``columns``."""
        frame = self.frame(columns, rows)
        values = np.asarray(self.pipeline.predict(frame))
        if not probabilities or self.labels is None or self.classes is None:
            return Prediction(values)
        raw = np.asarray(self.pipeline.predict_proba(frame), dtype=np.float64)
        return Prediction(values, align_proba(raw, self.classes, self.labels))
