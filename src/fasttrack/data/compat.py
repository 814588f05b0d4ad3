"""Whether new data can stand in for a model's training data: the check a scheduled retraining starts with.

:func:`compare` holds new data, as cleaning left it, against a registered version's training
:class:`~fasttrack.data.schema.Schema` and sorts what differs into two lists of
:class:`~fasttrack.errors.Violation` (a column and one readable reason):

- **breaking**: the data cannot be used as it is. For training (``purpose="train"``): a feature the data lacks or
  that cleaning would drop, a feature whose kind changed (numbers now text, categories now numbers), values a
  feature cannot take, a missing or unusable target, labels the model never had, a target of the other task. A
  model retrained on such data would serve another contract than the champion (clients sending the old fields
  would be refused), or could not be compared with it. For scoring (``purpose="score"``): only what stops
  scoring, an absent feature the training data always had and values a feature cannot take.
- **notes**: worth a look, nothing breaks: new columns, categories never seen in training, numbers outside the
  training range, missing values where training had none, classes absent from this data.

Nothing here decides what a value means: :func:`fasttrack.features.frames.validate` finds the refused values,
unseen categories and out-of-range numbers by the feature rules, labels are compared as the category text the
rules give them, and a column's kind is :func:`fasttrack.data.describe.column_kind`, the rule training describes
its own columns by.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from fasttrack.data.clean import CleanOptions
from fasttrack.data.describe import column_kind, infer_task
from fasttrack.data.schema import FeatureSchema, Schema
from fasttrack.errors import Violation
from fasttrack.features.frames import validate
from fasttrack.features.rules import category_text, plain, quoted, shown

if TYPE_CHECKING:
    import pandas as pd

#: What the data is for: retraining the model (it must carry the target, and keep every feature's kind) or
#: being scored by it (only what stops scoring breaks).
Purpose = Literal["train", "score"]


@dataclass(frozen=True)
class Compatibility:
    """What :func:`compare` found: the rows checked, the breaking changes and the notes (one line each)."""

    rows: int
    breaking: list[Violation]
    notes: list[Violation]

    @property
    def compatible(self) -> bool:
        """Whether nothing breaks (notes allowed)."""
        return not self.breaking


def clean_options(schema: Schema, purpose: Purpose) -> CleanOptions:
    """How new data is cleaned before :func:`compare`: as training reads, with the version's missing markers, and
    for ``train`` dropping what retraining would drop (a feature dropped is a finding); never for ``score``, where
    a column constant in one batch is fine. The target is left to the comparison, so that a missing one is reported
    beside the rest rather than stopping the read."""
    training = purpose == "train"
    return CleanOptions(missing_markers=schema.missing_markers, drop_constant=training, drop_identifiers=training)


def compare(
    frame: pd.DataFrame,
    schema: Schema,
    *,
    purpose: Purpose = "train",
    dropped: Mapping[str, str] | None = None,
) -> Compatibility:
    """Compare cleaned data with a model's training schema (see the module docstring for what breaks).

    Parameters
    ----------
    frame
        The new data after cleaning (:func:`fasttrack.data.clean.clean`, with the schema's missing markers).
    schema
        The training schema of the version the data is checked against.
    purpose
        ``train``: the data is to retrain the model; ``score``: it is to be scored by it.
    dropped
        The columns cleaning dropped from ``frame`` and why (``CleanReport.dropped_columns``): a feature among
        them is one retraining would lose.
    """
    dropped = dict(dropped or {})
    training = purpose == "train"
    checked = validate(frame, schema)
    refused: dict[str, list[str]] = {}
    for error in checked.errors:
        refused.setdefault(error.field, []).append(error.reason)
    breaking: list[Violation] = []
    notes: list[Violation] = []
    for feature in schema.features:
        name = feature.name
        change = _feature_change(frame, feature, dropped, refused.get(name, []), training=training)
        if change is not None:
            breaking.append(Violation(name, change))
            continue
        notes += [w for w in checked.warnings if w.field == name]
        if name in frame.columns and frame[name].notna().sum() == 0 and feature.nullable:
            notes.append(Violation(name, "every value is missing (the model imputes them)"))
    if training:
        target_breaking, target_notes = _target_changes(frame, schema, dropped)
        breaking += target_breaking
        notes += target_notes
    known = {*schema.feature_names, *schema.training_columns}
    for column in frame.columns:
        if column not in known:
            why = "retraining would use it as a feature" if training else "ignored"
            notes.append(Violation(str(column), f"new column: the model never saw it; {why}"))
    return Compatibility(rows=len(frame), breaking=breaking, notes=notes)


def _feature_change(
    frame: pd.DataFrame, feature: FeatureSchema, dropped: dict[str, str], refused: list[str], *, training: bool
) -> str | None:
    """Why ``feature`` breaks in this data, or ``None`` when it does not."""
    name = feature.name
    if name in dropped:
        return f"retraining would drop it: cleaning finds it {dropped[name]} in this data"
    if name not in frame.columns:
        if training or not feature.nullable:
            return f"missing: the model was trained on this {feature.kind} feature"
        return None  # scoring treats an absent nullable feature as missing: validate's warning says so
    values = frame[name]
    kind = column_kind(values) if values.notna().any() else None
    refusals = "; ".join(refused)
    if training and kind is not None and kind != feature.kind:
        example = shown(plain(values.dropna().iloc[0]))
        change = f"kind changed: {feature.kind} in training, {kind} here (e.g. {example})"
        return f"{change}; {refusals}" if refusals else change
    if refusals:
        return f"values a {feature.kind} feature cannot take: {refusals}"
    return None


def _target_changes(
    frame: pd.DataFrame, schema: Schema, dropped: dict[str, str]
) -> tuple[list[Violation], list[Violation]]:
    """The target's breaking changes and notes, for data to train on."""
    target = schema.target
    name = target.name
    if name in dropped:
        return [Violation(name, f"the target cannot be trained on: cleaning finds it {dropped[name]}")], []
    if name not in frame.columns:
        return [Violation(name, "the target column is missing: there is nothing to train on")], []
    values = frame[name].dropna()
    if values.empty:
        return [Violation(name, "the target has no values: there is nothing to train on")], []
    notes: list[Violation] = []
    without = len(frame) - len(values)
    if without:
        notes.append(Violation(name, f"{without} rows have no target value (training drops them)"))
    kind = column_kind(values)
    if target.task == "regression":
        if kind != "numeric":
            example = shown(plain(values.iloc[0]))
            change = f"task changed: a regression target in training, {kind} values here (e.g. {example})"
            return [Violation(name, change)], notes
        numbers = values.to_numpy(dtype="float64")
        low = target.min if target.min is not None else float("-inf")
        high = target.max if target.max is not None else float("inf")
        outside = int(((numbers < low) | (numbers > high)).sum())
        if outside:
            notes.append(Violation(name, f"{outside} target values outside the training range [{low}, {high}]"))
        return [], notes
    labels = [category_text(label) for label in target.labels or []]
    text = values.map(category_text)
    counts = text.value_counts()
    new = [(str(label), int(count)) for label, count in counts.items() if label not in labels]
    absent = [label for label in labels if label is not None and label not in counts.index]
    if absent:
        notes.append(Violation(name, f"classes absent from this data: {quoted(absent)}"))
    if not new:
        return [], notes
    if kind == "numeric" and infer_task(values) == "regression":
        change = (
            f"task changed: classification in training, the target here looks like a regression target "
            f"({len(counts)} distinct numbers, e.g. {quoted([label for label, _ in new])})"
        )
    else:
        rows = sum(count for _, count in new)
        change = (
            f"labels the model never had: {quoted([label for label, _ in new])} ({rows} rows); "
            f"a new class changes the task (known: {quoted([str(label) for label in labels])})"
        )
    return [Violation(name, change)], notes
