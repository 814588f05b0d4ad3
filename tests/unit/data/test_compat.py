"""New data against a training schema: what breaks retraining or scoring, and what is only worth a note."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fasttrack.data.clean import clean
from fasttrack.data.compat import Compatibility, Purpose, clean_options, compare
from fasttrack.data.describe import infer_schema
from fasttrack.data.schema import Schema


@pytest.fixture
def schema(training: pd.DataFrame) -> Schema:
    cleaned, report = clean(training, "y")
    return infer_schema(cleaned, "y", dropped_columns=report.dropped_columns)


def checked(frame: pd.DataFrame, schema: Schema, purpose: Purpose = "train") -> Compatibility:
    """New data cleaned as ``fasttrack.check_data`` cleans it, then compared."""
    cleaned, report = clean(frame, None, clean_options(schema, purpose))
    return compare(cleaned, schema, purpose=purpose, dropped=report.dropped_columns)


def breaking(found: Compatibility) -> dict[str, str]:
    return {v.field: v.reason for v in found.breaking}


def notes(found: Compatibility) -> dict[str, str]:
    return {v.field: v.reason for v in found.notes}


@pytest.mark.parametrize("purpose", ["train", "score"])
def test_the_training_data_itself_fits_with_nothing_to_say(
    training: pd.DataFrame, schema: Schema, purpose: Purpose
) -> None:
    found = checked(training, schema, purpose)
    assert found.compatible and found.breaking == [] and found.notes == []
    assert found.rows == len(training)


def test_a_missing_feature_breaks_retraining_and_scoring_when_training_always_had_it(
    training: pd.DataFrame, schema: Schema
) -> None:
    without = training.drop(columns=["colour"])
    assert breaking(checked(without, schema)) == {
        "colour": "missing: the model was trained on this categorical feature"
    }
    assert breaking(checked(without, schema, "score")) == {
        "colour": "missing: the model was trained on this categorical feature"
    }


def test_a_missing_nullable_feature_breaks_retraining_but_scoring_treats_it_as_missing(
    training: pd.DataFrame, schema: Schema
) -> None:
    without = training.drop(columns=["age"])  # age had missing values in training
    assert "age" in breaking(checked(without, schema))
    scored = checked(without, schema, "score")
    assert scored.compatible
    assert notes(scored) == {"age": "column is missing; its values are treated as missing"}


def test_numbers_turned_text_are_a_kind_change_naming_the_values(training: pd.DataFrame, schema: Schema) -> None:
    changed = training.assign(income=training["income"].astype(object))
    changed.loc[:4, "income"] = "unknown"
    reason = breaking(checked(changed, schema))["income"]
    assert reason.startswith("kind changed: numeric in training, categorical here")
    assert "expected a number, got 'unknown' (5 rows)" in reason
    scored = breaking(checked(changed, schema, "score"))
    assert scored == {"income": "values a numeric feature cannot take: expected a number, got 'unknown' (5 rows)"}


def test_categories_turned_numbers_break_retraining_only(training: pd.DataFrame, schema: Schema) -> None:
    codes = {"red": 1, "blue": 2, "green": 3, "pink": 4}
    changed = training.assign(colour=training["colour"].map(codes))
    assert breaking(checked(changed, schema)) == {
        "colour": "kind changed: categorical in training, numeric here (e.g. 1)"
    }
    scored = checked(changed, schema, "score")  # the rules read 1 as the category "1": scoring works
    assert scored.compatible
    assert notes(scored)["colour"].startswith("4 categories never seen in training: '1'")


def test_a_feature_cleaning_would_drop_breaks_retraining(training: pd.DataFrame, schema: Schema) -> None:
    constant = training.assign(member=True)
    assert breaking(checked(constant, schema)) == {
        "member": "retraining would drop it: cleaning finds it constant in this data"
    }
    assert checked(constant, schema, "score").compatible  # one value is fine to score


def test_the_target_must_be_there_to_retrain_not_to_score(training: pd.DataFrame, schema: Schema) -> None:
    unlabelled = training.drop(columns=["y"])
    assert breaking(checked(unlabelled, schema)) == {"y": "the target column is missing: there is nothing to train on"}
    assert checked(unlabelled, schema, "score").compatible


def test_a_new_label_is_a_change_of_task_and_an_absent_one_a_note(training: pd.DataFrame, schema: Schema) -> None:
    relabelled = training.assign(y=np.where(training["y"] == "no", "maybe", training["y"]))
    found = checked(relabelled, schema)
    assert breaking(found) == {
        "y": "labels the model never had: 'maybe' (100 rows); a new class changes the task (known: 'no', 'yes')"
    }
    assert notes(found) == {"y": "classes absent from this data: 'no'"}


def test_a_numeric_target_where_labels_were_is_a_task_change(training: pd.DataFrame, schema: Schema) -> None:
    amounts = training.assign(y=np.linspace(0.5, 99.5, len(training)))
    reason = breaking(checked(amounts, schema))["y"]
    assert reason.startswith("task changed: classification in training, the target here looks like a regression")


def test_a_text_target_where_numbers_were_is_a_task_change(training: pd.DataFrame) -> None:
    numeric = training.assign(y=np.linspace(0, 1, len(training)))
    schema = infer_schema(numeric, "y", "regression")
    found = checked(training, schema)
    assert breaking(found) == {
        "y": "task changed: a regression target in training, categorical values here (e.g. 'no')"
    }
    wider = checked(numeric.assign(y=numeric["y"] * 2), schema)
    assert wider.compatible
    assert notes(wider)["y"] == "100 target values outside the training range [0.0, 1.0]"


def test_what_does_not_break_is_reported(training: pd.DataFrame, schema: Schema) -> None:
    new = training.assign(
        colour=training["colour"].where(training.index >= 3, "purple"),
        income=training["income"].where(training.index >= 2, 1e6),
        rooms=training["rooms"].astype("float64").where(training.index >= 1, np.nan),
        region=np.where(training.index % 2 == 0, "north", "south"),
        y=training["y"].where(training.index >= 4, None),
    )
    found = checked(new, schema)
    assert found.compatible
    assert notes(found) == {
        "colour": "1 categories never seen in training: 'purple' (3 rows)",
        "income": f"2 values outside the training range [{schema.feature('income').min}, "
        f"{schema.feature('income').max}]",
        "rooms": "1 missing values; the training data had none (the model imputes them)",
        "y": "4 rows have no target value (training drops them)",
        "region": "new column: the model never saw it; retraining would use it as a feature",
    }


def test_every_reason_is_one_line(training: pd.DataFrame, schema: Schema) -> None:
    messy = training.drop(columns=["age"]).assign(income="a\nb", y=["x\ny"] * len(training), extra="e")
    found = checked(messy, schema)
    assert len(found.breaking) >= 3
    assert all("\n" not in str(v) for v in [*found.breaking, *found.notes])
