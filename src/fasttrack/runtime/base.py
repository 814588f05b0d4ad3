"""The one interface from validated columns to predictions, whatever computes them.

A :class:`Runtime` takes the model's input as the feature drivers (:mod:`fasttrack.features`) make it -- one
column per feature: float64 values with NaN missing for numeric and boolean features, and for categorical ones
either text (an ``object`` array, ``np.nan`` missing) or a :class:`~fasttrack.features.arrow.CategoricalColumn`;
a feature absent from the columns is all missing -- and answers a :class:`Prediction`. The server, batch
scoring, evaluation, promotion and the ONNX agreement check at registration all predict through it, so a model
answers the same wherever it is asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

import numpy as np

from fasttrack.config import ResolvedTask
from fasttrack.data.schema import Label, Schema
from fasttrack.features.columns import CategoricalColumn

#: The model's input: one column per feature (see the module docstring).
Columns: TypeAlias = Mapping[str, "np.ndarray[Any, Any] | CategoricalColumn"]
RuntimeName = Literal["onnx", "sklearn"]


@dataclass(frozen=True)
class Prediction:
    """Predictions for ``len(values)`` rows.

    ``values`` are the predicted labels, of the labels' own type (``object`` text, ``int64``, ``bool``, ``float64``),
    or the predicted values (``float64``) of a regressor. ``probabilities`` (classifiers, when asked) has one
    column per entry of the runtime's ``labels``, in that order: float32 from ONNX Runtime, which computes in
    float32, float64 from scikit-learn. ``codes`` is each row's label as its index in ``labels``, when the runtime
    has it at no cost (ONNX graphs exported by FastTrack): it makes a dictionary-encoded column without a Python
    object per row.
    """

    values: np.ndarray[Any, Any]
    probabilities: np.ndarray[Any, Any] | None = None
    codes: np.ndarray[Any, Any] | None = None


class Runtime(Protocol):
    """Predicts from validated columns (see the module docstring)."""

    task: ResolvedTask
    schema: Schema
    #: Class labels in probability column order (classifiers); ``None`` for regressors.
    labels: list[Label] | None

    @property
    def name(self) -> RuntimeName:
        """What computes the predictions: ``onnx`` (ONNX Runtime) or ``sklearn`` (the fitted pipeline)."""
        ...

    def predict(self, columns: Columns, rows: int, *, probabilities: bool = False) -> Prediction:
        """Predictions for ``rows`` rows of ``columns`` and, when asked and a classifier, the probabilities."""
        ...


def align_proba(proba: np.ndarray[Any, Any], classes: Sequence[Any], labels: Sequence[Any]) -> np.ndarray[Any, Any]:
    """Reorder probability columns from a model's ``classes`` to ``labels``; labels it lacks get zeros."""
    position = {label: i for i, label in enumerate(natives(labels))}
    aligned = np.zeros((proba.shape[0], len(position)), dtype=proba.dtype)
    for column, cls in enumerate(natives(classes)):
        if cls not in position:
            raise ValueError(f"the model predicts class {cls!r}, which is not among the labels {list(labels)!r}")
        aligned[:, position[cls]] = proba[:, column]
    return aligned


def natives(values: Iterable[Any]) -> list[Any]:
    """Values as plain Python scalars (numpy scalars unwrapped), so they hash, compare and serialise alike."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]
