"""Each cleaning rule, its count in the report, and the guarantees of ``clean`` (input untouched, fresh index)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fasttrack.data.clean import CleanOptions, CleanReport, clean
from fasttrack.errors import DataError

KEEP_ALL = CleanOptions(drop_constant=False, drop_identifiers=False, drop_duplicates=False)


def test_strips_column_names_and_reports_renames() -> None:
    frame = pd.DataFrame({" age": [1, 2], "name ": ["a", "b"], "y": [0, 1], "": [5, 5]})
    cleaned, report = clean(frame, "y", KEEP_ALL)
    assert cleaned.columns.tolist() == ["age", "name", "y", "unnamed_3"]
    assert report.renamed_columns == {" age": "age", "name ": "name", "": "unnamed_3"}


@pytest.mark.parametrize("names", [["a", " a", "y"], ["a", "a", "y"]])
def test_duplicate_column_names_are_an_error(names: list[str]) -> None:
    frame = pd.DataFrame([[1, 2, 3]], columns=names)
    with pytest.raises(DataError, match=r"duplicate column names \(after stripping spaces\): 'a'"):
        clean(frame, "y")


def test_strips_text_values_and_counts_them_per_column() -> None:
    frame = pd.DataFrame({"w": [" State-gov", "Private ", "Private"], "y": [" <=50K", " >50K", "<=50K"]})
    cleaned, report = clean(frame, "y", KEEP_ALL)
    assert cleaned["w"].tolist() == ["State-gov", "Private", "Private"]
    assert cleaned["y"].tolist() == ["<=50K", ">50K", "<=50K"]
    assert report.stripped_values == {"w": 2, "y": 2}


def test_missing_markers_become_missing_case_insensitively_and_are_counted() -> None:
    frame = pd.DataFrame(
        {
            "a": [" ?", "NA", "n/a", "x", "NULL", "none", "NaN", "", "x"],
            "b": ["x", "y", ".", "z", "x", "y", "z", "x", "-"],
            "y": [1, 0, 1, 0, 1, 0, 1, 0, 1],
        }
    )
    cleaned, report = clean(frame, "y", KEEP_ALL)
    assert cleaned["a"].isna().sum() == 7
    assert cleaned["a"].dropna().tolist() == ["x", "x"]
    assert report.missing_markers == {"a": 7}
    # "." and "-" are real values (penguins' Sex has "."), not known markers.
    assert cleaned["b"].tolist() == frame["b"].tolist()


def test_custom_missing_markers() -> None:
    frame = pd.DataFrame({"a": ["unknown", "x", "?", "x"], "y": [1, 0, 1, 0]})
    cleaned, report = clean(frame, "y", KEEP_ALL.model_copy(update={"missing_markers": ["Unknown"]}))
    assert cleaned["a"].tolist()[1:] == ["x", "?", "x"]
    assert pd.isna(cleaned["a"].iloc[0])
    assert report.missing_markers == {"a": 1}


@pytest.mark.parametrize(
    ("values", "dtype", "expected"),
    [
        (["1", " 2", "3"], "int64", [1, 2, 3]),
        (["1.0", "2", "-3"], "int64", [1, 2, -3]),
        (["1.5", "2", "1e3"], "float64", [1.5, 2.0, 1000.0]),
        (["1", "?", "3"], "float64", [1.0, np.nan, 3.0]),
    ],
)
def test_numeric_text_becomes_numbers(values: list[str], dtype: str, expected: list[float]) -> None:
    frame = pd.DataFrame({"n": values, "y": ["a", "b", "a"]})
    cleaned, report = clean(frame, "y", KEEP_ALL)
    assert cleaned["n"].dtype == dtype
    np.testing.assert_array_equal(cleaned["n"].to_numpy(), np.array(expected))
    assert report.converted_to_numeric == ["n"]


def test_text_with_a_word_stays_text() -> None:
    frame = pd.DataFrame({"n": ["1", "2", "three"], "y": ["a", "b", "a"]})
    cleaned, report = clean(frame, "y", KEEP_ALL)
    assert cleaned["n"].tolist() == ["1", "2", "three"]
    assert report.converted_to_numeric == []


def test_only_true_false_text_becomes_boolean() -> None:
    frame = pd.DataFrame(
        {
            "t": ["True", "false", "TRUE"],
            "m": ["true", "", "false"],
            "yn": ["yes", "no", "yes"],
            "y": ["yes", "no", "no"],
        }
    )
    cleaned, report = clean(frame, "y", KEEP_ALL)
    assert cleaned["t"].dtype == bool
    assert cleaned["t"].tolist() == [True, False, True]
    assert cleaned["m"].dtype == "boolean"
    assert cleaned["m"].tolist() == [True, pd.NA, False]
    assert cleaned["yn"].tolist() == ["yes", "no", "yes"]
    assert cleaned["y"].tolist() == ["yes", "no", "no"]
    assert report.converted_to_boolean == ["t", "m"]


def test_object_booleans_with_nulls_become_nullable_booleans() -> None:
    frame = pd.DataFrame({"b": pd.Series([True, None, False], dtype=object), "y": [1, 0, 1]})
    cleaned, report = clean(frame, "y", KEEP_ALL)
    assert cleaned["b"].dtype == "boolean"
    assert report.converted_to_boolean == ["b"]


def test_dates_and_mixed_objects_become_text() -> None:
    frame = pd.DataFrame(
        {
            "when": pd.to_datetime(pd.Series(["2020-01-01", None, "2020-03-01"])),
            "mixed": pd.Series([1, "a", None], dtype=object),
            "y": [1, 0, 1],
        }
    )
    cleaned, _ = clean(frame, "y", KEEP_ALL)
    assert cleaned["when"].tolist()[::2] == ["2020-01-01", "2020-03-01"]
    assert cleaned["mixed"].tolist()[:2] == ["1", "a"]
    assert cleaned["when"].isna().sum() == 1
    assert cleaned["mixed"].isna().sum() == 1


def test_absent_target_names_the_columns_that_exist() -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    with pytest.raises(DataError, match=r"target column 'y' not found; columns are: a, b"):
        clean(frame, "y")


def test_target_matches_a_stripped_column_name() -> None:
    cleaned, _ = clean(pd.DataFrame({"x": [1, 2, 1], " y ": [0, 1, 0]}), " y ", KEEP_ALL)
    assert cleaned.columns.tolist() == ["x", "y"]


def test_rows_without_target_are_dropped_and_counted() -> None:
    frame = pd.DataFrame({"x": [1, 2, 3, 4, 5], "y": ["a", "?", None, "", "b"]})
    cleaned, report = clean(frame, "y", KEEP_ALL)
    assert cleaned["x"].tolist() == [1, 5]
    assert report.rows_without_target_dropped == 3
    assert report.rows_in == 5
    assert report.rows_out == 2


def test_no_row_with_a_target_is_an_error() -> None:
    with pytest.raises(DataError, match=r"no rows left: every row is missing the target 'y'"):
        clean(pd.DataFrame({"x": [1, 2], "y": ["?", None]}), "y")


def test_exact_duplicate_rows_are_dropped_and_counted() -> None:
    frame = pd.DataFrame({"x": [1, 1, 2, 1, np.nan, np.nan], "c": ["a", "a", "a", "b", "c", "c"], "y": [0] * 6})
    cleaned, report = clean(frame, "y", KEEP_ALL.model_copy(update={"drop_duplicates": True}))
    assert report.duplicates_dropped == 2
    assert cleaned["c"].tolist() == ["a", "a", "b", "c"]
    _, kept = clean(frame, "y", KEEP_ALL)
    assert kept.duplicates_dropped == 0


def test_requested_drops_and_keeps() -> None:
    frame = pd.DataFrame({"a": [1, 2, 1], "b": [3, 4, 3], "c": [5, 6, 5], "y": [0, 1, 0]})
    options = KEEP_ALL.model_copy(update={"drop_columns": ["a"], "keep_columns": ["a", "b "]})
    cleaned, report = clean(frame, "y", options)
    assert cleaned.columns.tolist() == ["b", "y"]
    assert report.dropped_columns == {"a": "requested", "c": "not kept"}
    assert report.columns_in == 4
    assert report.columns_out == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (CleanOptions(drop_columns=["nope", "a"]), r"unknown columns in drop_columns: 'nope'; columns are: a, y"),
        (CleanOptions(keep_columns=["zz", "qq"]), r"unknown columns in keep_columns: 'zz', 'qq'"),
        (CleanOptions(drop_columns=["y"]), r"cannot drop the target column 'y'"),
    ],
)
def test_bad_drop_and_keep_requests(options: CleanOptions, message: str) -> None:
    with pytest.raises(DataError, match=message):
        clean(pd.DataFrame({"a": [1, 2], "y": [0, 1]}), "y", options)


def test_options_forbid_unknown_fields() -> None:
    with pytest.raises(ValueError, match="drop_colums"):
        CleanOptions(drop_colums=["a"])  # type: ignore[call-arg]


def test_constant_columns_are_dropped_with_a_note() -> None:
    frame = pd.DataFrame({"one": [7, 7, None, 7], "empty": ["", "?", None, "NA"], "x": [1, 2, 1, 2], "y": [0, 0, 0, 0]})
    cleaned, report = clean(frame, "y")
    assert cleaned.columns.tolist() == ["x", "y"]
    assert report.dropped_columns == {"one": "constant", "empty": "constant"}
    assert "dropped column 'one': constant, every value is 7.0" in report.notes
    assert "dropped column 'empty': constant, all values missing" in report.notes
    kept, _ = clean(frame, "y", CleanOptions(drop_constant=False))
    assert kept.columns.tolist() == ["one", "empty", "x", "y"]


def test_identifier_columns_are_dropped_but_not_the_target() -> None:
    frame = pd.DataFrame(
        {
            "PassengerId": [1, 2, 3, 4, 5],
            "Name": ["Braund, Mr.", "Cumings, Mrs.", "Heikkinen, Miss", "Futrelle, Mrs.", None],
            "Ticket": ["A/5", "PC 1", "A/5", "113803", "373450"],
            "Code": [10, 3, 7, 42, 5],
            "Step": [0, 2, 4, 6, 8],
            "y": ["a", "b", "c", "d", "e"],
        }
    )
    cleaned, report = clean(frame, "y")
    assert cleaned.columns.tolist() == ["Ticket", "Code", "Step", "y"]
    assert report.dropped_columns == {
        "PassengerId": "identifier (all values unique)",
        "Name": "identifier (all values unique)",
    }
    kept, _ = clean(frame, "y", CleanOptions(drop_identifiers=False))
    assert kept.shape[1] == 6


def test_row_number_survives_dropped_rows() -> None:
    frame = pd.DataFrame({"id": [1, 2, 3, 4], "x": [1, 1, 2, 2], "y": ["a", None, "b", "a"]})
    cleaned, report = clean(frame, "y")
    assert "id" not in cleaned.columns
    assert report.dropped_columns == {"id": "identifier (all values unique)"}


def test_input_is_not_mutated_and_index_is_fresh() -> None:
    frame = pd.DataFrame(
        {" a": [" x", "?", " x", "z"], "n": ["1", "2", "1", "3"], "y": ["p", "q", "p", None]},
        index=[10, 20, 30, 40],
    )
    original = frame.copy()
    cleaned, _ = clean(frame, "y", CleanOptions(drop_constant=False))
    pd.testing.assert_frame_equal(frame, original)
    assert cleaned.index.tolist() == [0, 1]
    assert cleaned["a"].isna().tolist() == [False, True]


def test_report_summary_lines() -> None:
    frame = pd.DataFrame({"x": [1, 1, 2], "c": ["a", "a", "b "], "y": [0, 0, None]})
    _, report = clean(frame, "y")
    lines = report.summary()
    assert lines[:2] == ["rows: 3 in, 1 out", "columns: 3 in, 1 out"]
    assert "dropped 1 rows without a target value" in lines
    assert "dropped 1 exact duplicate rows" in lines
    assert lines[2:] == report.notes
    assert CleanReport.model_validate_json(report.model_dump_json()) == report


def test_no_target_keeps_every_row() -> None:
    frame = pd.DataFrame({"x": ["1", None, "3"], "c": ["a", "b", "a"]})
    cleaned, report = clean(frame, None)
    assert len(cleaned) == 3
    assert report.rows_without_target_dropped == 0
