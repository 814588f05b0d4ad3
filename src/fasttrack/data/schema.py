"""The training schema: what each feature is, what values it took, and a reference profile for drift.

A :class:`Schema` is described from cleaned training data by :func:`fasttrack.data.describe.infer_schema` and
saved as JSON with every model. It records the features in model input order, the target, the other columns
the training data had (dropped by cleaning: new data may still carry them) and the missing markers, so that
:mod:`fasttrack.features` reads new values exactly as training read its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fasttrack.features.rules import DEFAULT_MISSING_MARKERS, FeatureKind

Label = str | int | float | bool

#: 2: the schema records the columns cleaning dropped and the missing markers (1 did not: read as none and
#: the default markers).
SCHEMA_VERSION = 2
#: Categories stored per feature; a feature with this many may have had more, so "unseen" is not checked.
MAX_STORED_CATEGORIES = 1000
#: Categories kept by name in a categorical profile; the rest are summed as ``other``.
PROFILE_TOP_CATEGORIES = 50
#: A whole-number target is a class label when it has at most this many distinct values (and see infer_task).
MAX_CLASSES = 20


class NumericProfile(BaseModel):
    """Reference distribution of a numeric feature: quantile bin edges and the share of rows in each bin.

    ``edges`` has one more element than ``proportions``; the first and last bins are open-ended when the
    profile is applied to new data. ``missing`` is the share of missing values (not included in the bins).
    """

    model_config = ConfigDict(extra="forbid")
    edges: list[float]
    proportions: list[float]
    missing: float = 0.0


class CategoricalProfile(BaseModel):
    """Reference distribution of a categorical or boolean feature: the share of each category.

    Categories beyond the most frequent ones are summed under ``other``; ``missing`` is the missing share.
    """

    model_config = ConfigDict(extra="forbid")
    frequencies: dict[str, float]
    other: float = 0.0
    missing: float = 0.0


class FeatureSchema(BaseModel):
    """One input feature as seen in the training data."""

    model_config = ConfigDict(extra="forbid")
    name: str
    kind: FeatureKind
    dtype: str = Field(description="pandas dtype of the cleaned training column, e.g. int64, float64, str, bool.")
    nullable: bool
    missing_ratio: float
    min: float | None = None
    max: float | None = None
    integer: bool = Field(False, description="Numeric feature whose training values were all whole numbers.")
    categories: list[str] | None = Field(None, description="Categories seen in training, most frequent first.")
    frequent_categories: list[str] | None = Field(
        None, description="Categories the model encodes; others are grouped with unseen ones."
    )
    example: str | float | bool | None = Field(None, description="A typical value, for docs and examples.")
    profile: NumericProfile | CategoricalProfile | None = None

    def known_categories(self) -> frozenset[str] | None:
        """The categories seen in training, when every one was stored (so a new one can be told); else ``None``."""
        if self.kind != "categorical" or not self.categories or len(self.categories) >= MAX_STORED_CATEGORIES:
            return None
        return frozenset(self.categories)


class TargetSchema(BaseModel):
    """The target column: its task and, for classification, its labels in their original values."""

    model_config = ConfigDict(extra="forbid")
    name: str
    task: Literal["classification", "regression"]
    dtype: str
    labels: list[Label] | None = None
    min: float | None = None
    max: float | None = None
    profile: NumericProfile | CategoricalProfile | None = None


class Schema(BaseModel):
    """The schema of a training data set: features in model input order, the target, and the row count."""

    model_config = ConfigDict(extra="forbid")
    version: int = SCHEMA_VERSION
    features: list[FeatureSchema]
    target: TargetSchema
    n_rows: int
    dropped_columns: dict[str, str] = Field(
        default_factory=dict,
        description="Columns of the training data that cleaning dropped, and why (identifiers, constants, "
        "requested): new data may carry them; they are ignored.",
    )
    missing_markers: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MISSING_MARKERS),
        description="Text values that meant missing in training (compared stripped, ignoring ASCII case).",
    )

    @property
    def feature_names(self) -> list[str]:
        """Feature names in the order the model pipeline expects them."""
        return [f.name for f in self.features]

    @property
    def training_columns(self) -> list[str]:
        """The training data's columns that are not features: those cleaning dropped, then the target."""
        return [*self.dropped_columns, self.target.name]

    def feature(self, name: str) -> FeatureSchema:
        """The feature called ``name``; ``KeyError`` when there is none."""
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def example_record(self) -> dict[str, str | float | bool | None]:
        """One record of typical values, usable as a request example."""
        return {f.name: f.example for f in self.features}

    def save(self, path: str | Path) -> None:
        """Write the schema as JSON, atomically (a temporary file renamed into place)."""
        target = Path(path)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(self.model_dump_json(indent=2), encoding="utf-8")
        tmp.replace(target)

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        """Read a schema written by :meth:`save`."""
        return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


def bin_proportions(profile: NumericProfile, values: np.ndarray) -> list[float]:
    """The share of non-missing ``values`` in each bin of a reference profile, to compare against it.

    Bin ``i`` holds values in ``(edges[i], edges[i + 1]]``, except that the first bin is open below and the last
    open above, so new values outside the training range still land in a bin. All zeros when no value is present.
    """
    count = len(profile.edges) - 1
    if count < 1:
        return []
    numbers = np.asarray(values, dtype="float64")
    numbers = numbers[~np.isnan(numbers)]
    if numbers.size == 0:
        return [0.0] * count
    index = np.searchsorted(np.asarray(profile.edges[1:-1], dtype="float64"), numbers, side="left")
    proportions: list[float] = (np.bincount(index, minlength=count) / numbers.size).tolist()
    return proportions
