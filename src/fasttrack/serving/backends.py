"""Inference backends: the one small interface between validated input and a model's arithmetic.

The :class:`~fasttrack.serving.predictor.Predictor` validates records and builds *columns* (one numpy array per
feature, in the schema's order); a :class:`Backend` turns columns into predictions. The scikit-learn backend here
builds the pandas frame the pipeline was fitted on; an ONNX Runtime backend takes the same columns, and
:func:`select_backend` is the single place that picks one when a model is loaded, so routes never change.

Columns, as every backend receives them:

- numeric and boolean features: ``float64`` arrays, ``NaN`` for missing (booleans as 0.0/1.0);
- categorical features: ``object`` arrays of Python ``str``, ``np.nan`` for missing (what scikit-learn's encoders
  and ``fasttrack.data.schema.prepare_features`` use).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np
import pandas as pd

from fasttrack.data.schema import Label, Schema
from fasttrack.registry.model_folder import LoadedModel

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


def select_backend(model: LoadedModel) -> Backend:
    """The backend for a loaded model folder (scikit-learn for now; ONNX Runtime plugs in here)."""
    return SklearnBackend(model.pipeline, model.schema, model.is_classifier)
