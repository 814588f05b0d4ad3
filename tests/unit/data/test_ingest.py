"""Reading files of every supported format and variant, refusing bad input clearly, fingerprinting, ingesting."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest

from fasttrack.data.clean import CleanOptions
from fasttrack.data.ingest import fingerprint, ingest, read_table
from fasttrack.errors import DataError


def _write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


# --- CSV variants ----------------------------------------------------------------------------------------------

EXPECTED = {"id": [1, 2], "name": ["ann", "bob"], "score": [1.5, 2.0]}


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("comma.csv", "id,name,score\n1,ann,1.5\n2,bob,2.0\n"),
        ("semicolon.csv", "id;name;score\n1;ann;1.5\n2;bob;2.0\n"),
        ("tab.tsv", "id\tname\tscore\n1\tann\t1.5\n2\tbob\t2.0\n"),
        ("tab_in_csv.csv", "id\tname\tscore\n1\tann\t1.5\n2\tbob\t2.0\n"),
        ("pipe.txt", "id|name|score\n1|ann|1.5\n2|bob|2.0\n"),
        ("bom.csv", b"\xef\xbb\xbfid,name,score\n1,ann,1.5\n2,bob,2.0\n"),
        ("crlf.csv", "id,name,score\r\n1,ann,1.5\r\n2,bob,2.0\r\n"),
        ("quoted_semicolon.csv", '"id";"name";"score"\n1;"ann";1.5\n2;"bob";2.0\n'),
        ("no_final_newline.csv", "id,name,score\n1,ann,1.5\n2,bob,2.0"),
        ("upper.CSV", "id,name,score\n1,ann,1.5\n2,bob,2.0\n"),
    ],
)
def test_read_csv_variants(tmp_path: Path, name: str, content: str | bytes) -> None:
    frame = read_table(_write(tmp_path, name, content))
    assert frame.to_dict("list") == EXPECTED
    assert [str(t) for t in frame.dtypes] == ["int64", "str", "float64"]


def test_read_csv_quoted_fields_keep_delimiters_doubled_quotes_and_newlines(tmp_path: Path) -> None:
    content = 'id,name,note\n1,"Braund, Mr. Owen","said ""hi"""\n2,"Line\nbreak",plain\n'
    frame = read_table(_write(tmp_path, "quoted.csv", content))
    assert frame["name"].tolist() == ["Braund, Mr. Owen", "Line\nbreak"]
    assert frame["note"].tolist() == ['said "hi"', "plain"]


def test_read_csv_sniffs_past_commas_inside_quoted_semicolon_fields(tmp_path: Path) -> None:
    content = 'a;b;c\n"x, y";1;2\n"z, w";3;4\n'
    assert read_table(_write(tmp_path, "d.csv", content)).columns.tolist() == ["a", "b", "c"]


def test_read_csv_explicit_delimiter_wins_over_sniffing(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.csv", "a;b,c\n1;2,3\n")
    assert read_table(path, delimiter=";").columns.tolist() == ["a", "b,c"]
    assert read_table(path, delimiter=",").columns.tolist() == ["a;b", "c"]


def test_read_csv_single_column(tmp_path: Path) -> None:
    assert read_table(_write(tmp_path, "one.csv", "label\nx\ny\n"))["label"].tolist() == ["x", "y"]


def test_read_csv_leaves_empty_strings_for_the_cleaning_step(tmp_path: Path) -> None:
    frame = read_table(_write(tmp_path, "e.csv", "age,cabin,port\n22,,S\n,C85,?\n"))
    assert frame["cabin"].tolist() == ["", "C85"]
    assert frame["port"].tolist() == ["S", "?"]
    assert frame["age"].dtype == "float64"
    assert np.isnan(frame["age"].iloc[1])


def test_read_csv_keeps_dates_and_times_as_written(tmp_path: Path) -> None:
    frame = read_table(_write(tmp_path, "t.csv", "day,at,n\n2020-01-01,2020-01-01T10:00:00Z,1\n"))
    assert frame.to_dict("list") == {"day": ["2020-01-01"], "at": ["2020-01-01T10:00:00Z"], "n": [1]}


def test_read_csv_natural_types(tmp_path: Path) -> None:
    frame = read_table(_write(tmp_path, "types.csv", "i,f,b,s\n1,0.5,true,x\n2,1.5,false,y\n"))
    assert [str(t) for t in frame.dtypes] == ["int64", "float64", "bool", "str"]


def test_read_gzip_compressed_csv(tmp_path: Path) -> None:
    frame = read_table(_write(tmp_path, "data.csv.gz", gzip.compress(b"a;b\n1;x\n")))
    assert frame.to_dict("list") == {"a": [1], "b": ["x"]}


def test_format_argument_overrides_the_extension(tmp_path: Path) -> None:
    path = _write(tmp_path, "export.dat", "a,b\n1,2\n")
    assert read_table(path, format="csv").to_dict("list") == {"a": [1], "b": [2]}
    assert read_table(path, format="CSV").shape == (1, 2)


# --- JSON, JSON Lines, Parquet -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    [
        [{"a": 1, "b": "x"}, {"a": 2, "b": None}],
        {"a": [1, 2], "b": ["x", None]},
        {"a": {"0": 1, "1": 2}, "b": {"0": "x", "1": None}},
    ],
    ids=["records", "columns-lists", "columns-dicts"],
)
def test_read_json_layouts(tmp_path: Path, document: object) -> None:
    frame = read_table(_write(tmp_path, "d.json", json.dumps(document)))
    assert frame.columns.tolist() == ["a", "b"]
    assert frame["a"].tolist() == [1, 2]
    assert frame["b"].iloc[0] == "x"
    assert pd.isna(frame["b"].iloc[1])
    assert frame.index.tolist() == [0, 1]


def test_read_json_records_with_keys_missing_in_some_records(tmp_path: Path) -> None:
    frame = read_table(_write(tmp_path, "d.json", '[{"a": 1}, {"a": 2, "b (mm)": 3.5}]'))
    assert frame.columns.tolist() == ["a", "b (mm)"]
    assert np.isnan(frame["b (mm)"].iloc[0])


@pytest.mark.parametrize("name", ["d.jsonl", "d.ndjson"])
def test_read_json_lines(tmp_path: Path, name: str) -> None:
    frame = read_table(_write(tmp_path, name, '{"a": 1, "b": "x"}\n\n{"a": 2, "b": "y"}\r\n'))
    assert frame.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}


@pytest.mark.parametrize("name", ["d.parquet", "d.pq"])
def test_read_parquet(tmp_path: Path, name: str) -> None:
    source = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [0.5, None], "d": [True, False]})
    frame = read_table(_write(tmp_path, name, _parquet_bytes(source)))
    assert frame.to_dict("list")["a"] == [1, 2]
    assert [str(t) for t in frame.dtypes] == ["int64", "str", "float64", "bool"]
    assert np.isnan(frame["c"].iloc[1])


def test_read_parquet_keeps_a_named_index_as_a_column(tmp_path: Path) -> None:
    source = pd.DataFrame({"a": [1, 2]}, index=pd.Index([7, 9], name="id"))
    frame = read_table(_write(tmp_path, "d.parquet", _parquet_bytes(source)))
    assert frame.to_dict("list") == {"id": [7, 9], "a": [1, 2]}


# --- fsspec URLs -----------------------------------------------------------------------------------------------


def test_read_memory_url(tmp_path: Path) -> None:
    url = f"memory://fasttrack-tests/{tmp_path.name}/data.csv"
    with fsspec.open(url, "wb") as handle:
        handle.write(b"a;b\n1;x\n")
    try:
        assert read_table(url).to_dict("list") == {"a": [1], "b": ["x"]}
    finally:
        fsspec.filesystem("memory").rm(url)


def test_read_file_url(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.jsonl", '{"a": 1}\n')
    assert read_table(path.as_uri()).to_dict("list") == {"a": [1]}


# --- bad input -------------------------------------------------------------------------------------------------

PARQUET_MAGIC = b"PAR1\x15\x04\x15\x00"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "empty file: "),
        ("blank.csv", "\n \n", "empty file: "),
        ("bom_only.json", b"\xef\xbb\xbf", "empty file: "),
        ("header.csv", "a,b\n", "has a header but no data rows"),
        ("header_no_newline.csv", "a,b", "has a header but no data rows"),
        ("numbers.csv", "1,2.5\n3,4\n", "has no header row: its first line (1,2.5) looks like data"),
        ("ragged.csv", "a,b\n1,2,3\n", "is not valid CSV (expected UTF-8 text with a header row)"),
        ("latin1.csv", b"a,b\n1,caf\xe9\n", "is not UTF-8 text (column 'b'"),
        ("garbage.csv", b"\x00\x01\x02\xff\xfe garbage", "is not CSV text (it looks like binary data)"),
        ("parquet.csv", PARQUET_MAGIC, "is not CSV text (it looks like a Parquet file)"),
        ("zipped.csv", b"PK\x03\x04rest", "is not CSV text (it looks like a zip archive)"),
        ("text.parquet", "a,b\n1,2\n", "is not a Parquet file (it looks like text)"),
        ("broken.parquet", b"PAR1 not really parquet PAR1", "is not a valid Parquet file"),
        ("csv.json", "a,b\n1,2\n", "is not valid JSON"),
        ("scalar.json", "42", "expected an array of records"),
        ("numbers.json", "[1, 2]", "the array holds non-objects"),
        ("empty_array.json", "[]", "has no records"),
        ("no_columns.json", "{}", "has no columns"),
        ("scalars.json", '{"a": 1}', "expected an array of records"),
        ("ragged.json", '{"a": [1, 2], "b": [1]}', "the columns do not line up"),
        ("bad_line.jsonl", '{"a": 1}\n{"a": \n', "line 2 is not valid JSON"),
        ("array_line.jsonl", '{"a": 1}\n[1, 2]\n', "line 2: expected a JSON object, got list"),
        ("plain.csv.gz", "a,b\n1,2\n", "is not valid gzip data"),
        ("data.xlsx", "a,b\n1,2\n", "(extension '.xlsx'); known formats: csv, json, jsonl, parquet"),
        ("README", "a,b\n1,2\n", "(no extension); known formats: csv, json, jsonl, parquet"),
    ],
)
def test_bad_input_raises_one_clear_data_error(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    path = _write(tmp_path, name, content)
    with pytest.raises(DataError) as caught:
        read_table(path)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    # No library traceback is chained to the error a person sees.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match=r"^file not found: .*nope\.csv$"):
        read_table(missing)


def test_missing_memory_url() -> None:
    with pytest.raises(DataError, match=r"^file not found: memory://fasttrack-tests/absent\.csv$"):
        read_table("memory://fasttrack-tests/absent.csv")


def test_folder_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(DataError, match="is a folder, not a file"):
        read_table(tmp_path / "d.csv")


def test_unknown_protocol_and_format() -> None:
    with pytest.raises(DataError, match=r"cannot read nosuch://x/d\.csv"):
        read_table("nosuch://x/d.csv")
    with pytest.raises(DataError, match="unknown format 'xls'; known formats: csv, json, jsonl, parquet"):
        read_table("whatever.csv", format="xls")


def test_delimiter_must_be_one_character(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="one character"):
        read_table(_write(tmp_path, "d.csv", "a,b\n1,2\n"), delimiter=",,")


# --- fingerprint -----------------------------------------------------------------------------------------------

BASE = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", None], "c": [0.5, np.nan, 1.5]})


@pytest.mark.parametrize(
    "changed",
    [
        BASE.iloc[::-1],
        BASE.rename(columns={"a": "A"}),
        BASE.astype({"a": "float64"}),
        BASE.assign(c=[0.5, np.nan, 1.25]),
        BASE.assign(b=["x", "y", "z"]),
        BASE.iloc[:2],
        BASE[["b", "a", "c"]],
    ],
    ids=["row-order", "name", "dtype", "value", "missing", "rows", "column-order"],
)
def test_fingerprint_changes_with_the_data(changed: pd.DataFrame) -> None:
    assert fingerprint(changed) != fingerprint(BASE)


def test_fingerprint_is_stable_and_ignores_the_index() -> None:
    digest = fingerprint(BASE)
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    assert fingerprint(BASE.copy()) == digest
    assert fingerprint(BASE.set_axis([10, 11, 12])) == digest


def test_fingerprint_is_identical_in_another_process() -> None:
    code = (
        "import numpy as np, pandas as pd; from fasttrack.data.ingest import fingerprint; "
        "print(fingerprint(pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', None], 'c': [0.5, np.nan, 1.5]})))"
    )
    # A different hash seed: the digest must not depend on Python's per-process string hashing.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert other.stdout.strip() == fingerprint(BASE)


# --- ingest ----------------------------------------------------------------------------------------------------


def test_ingest_reads_cleans_and_fingerprints(tmp_path: Path) -> None:
    content = "id, colour ,size,label\n1, red,?,yes\n2,blue,3,no\n3,red,4,\n4,red,5,yes\n5,blue,6,no\n"
    path = _write(tmp_path, "d.csv", content)
    result = ingest(path, target="label")
    assert result.source == str(path)
    assert result.frame.columns.tolist() == ["colour", "size", "label"]
    assert result.frame["colour"].tolist() == ["red", "blue", "red", "blue"]
    assert result.frame["size"].tolist()[1:] == [3.0, 5.0, 6.0]
    assert result.report.renamed_columns == {" colour ": "colour"}
    assert result.report.rows_without_target_dropped == 1
    assert result.report.missing_markers == {"size": 1, "label": 1}
    assert result.report.dropped_columns == {"id": "identifier (all values unique)"}
    assert result.fingerprint == fingerprint(result.frame)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.source = "other"  # type: ignore[misc]


def test_ingest_passes_options_and_reader_arguments(tmp_path: Path) -> None:
    path = _write(tmp_path, "d.dat", "a|b|y\n1|x|0\n2|y|1\n")
    result = ingest(path, target="y", format="csv", options=CleanOptions(drop_columns=["b"], drop_identifiers=False))
    assert result.frame.columns.tolist() == ["a", "y"]
    assert result.report.dropped_columns == {"b": "requested"}


def test_ingest_without_a_target_keeps_every_row(tmp_path: Path) -> None:
    result = ingest(_write(tmp_path, "d.csv", "a,b\n1,\n2,x\n"), target=None, options=CleanOptions(drop_constant=False))
    assert len(result.frame) == 2


def test_ingest_unknown_target_names_the_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"target column 'y' not found; columns are: a, b"):
        ingest(_write(tmp_path, "d.csv", "a,b\n1,2\n"), target="y")


# --- the real data sets ----------------------------------------------------------------------------------------


@pytest.mark.datasets
def test_titanic(datasets_dir: Path) -> None:
    result = ingest(datasets_dir / "titanic.csv", target="Survived")
    report = result.report
    assert report.rows_in == 891
    assert report.rows_out == 891
    assert report.dropped_columns == {
        "PassengerId": "identifier (all values unique)",
        "Name": "identifier (all values unique)",
    }
    assert {"Ticket", "Cabin", "Age"} <= set(result.frame.columns)
    assert result.frame["Age"].isna().mean() == pytest.approx(0.199, abs=0.001)
    assert report.missing_markers == {"Cabin": 687, "Embarked": 2}
    assert result.frame["Survived"].dtype == "int64"


@pytest.mark.datasets
def test_adult(datasets_dir: Path) -> None:
    result = ingest(datasets_dir / "adult.csv", target="income")
    assert result.report.missing_markers == {"workclass": 1836, "occupation": 1843, "native-country": 583}
    assert sorted(result.frame["income"].unique()) == ["<=50K", ">50K"]
    assert result.frame["workclass"].iloc[0] == "State-gov"
    assert not result.frame["education"].str.startswith(" ").any()
    assert result.report.stripped_values["workclass"] == 32561
    assert result.frame["age"].dtype == "int64"


@pytest.mark.datasets
def test_bank(datasets_dir: Path) -> None:
    frame = read_table(datasets_dir / "bank.csv")
    assert frame.shape == (45211, 17)
    assert frame.columns[0] == "age"
    assert frame["job"].iloc[0] == "management"
    assert frame["balance"].dtype == "int64"
    assert frame["y"].value_counts().to_dict() == {"no": 39922, "yes": 5289}


@pytest.mark.datasets
def test_bank_additional(datasets_dir: Path) -> None:
    frame = read_table(datasets_dir / "bank_additional.csv")
    assert frame.shape == (41188, 21)
    assert {"emp.var.rate", "cons.price.idx", "nr.employed"} <= set(frame.columns)
    assert frame.columns[-1] == "y"
    assert not frame["y"].str.endswith("\r").any()
    assert frame["y"].value_counts().to_dict() == {"no": 36548, "yes": 4640}
    assert frame["euribor3m"].dtype == "float64"


@pytest.mark.datasets
def test_housing(datasets_dir: Path) -> None:
    result = ingest(datasets_dir / "housing.csv", target="median_house_value")
    assert result.frame.shape == (20640, 10)
    assert int(result.frame["total_bedrooms"].isna().sum()) == 207
    assert result.frame["ocean_proximity"].value_counts()["ISLAND"] == 5


@pytest.mark.datasets
def test_penguins(datasets_dir: Path) -> None:
    result = ingest(datasets_dir / "penguins.json", target="Species")
    frame = result.frame
    assert len(frame) == 344
    assert "Beak Length (mm)" in frame.columns
    assert int(frame["Body Mass (g)"].isna().sum()) == 2
    assert int(frame["Sex"].isna().sum()) == 10
    assert (frame["Sex"] == ".").sum() == 1
    assert frame["Species"].value_counts().to_dict() == {"Adelie": 152, "Gentoo": 124, "Chinstrap": 68}


@pytest.mark.datasets
def test_cars(datasets_dir: Path) -> None:
    result = ingest(datasets_dir / "cars.json", target="Miles_per_Gallon")
    assert result.report.rows_in == 406
    assert result.report.rows_without_target_dropped == 8
    assert len(result.frame) == 398
    assert result.frame["Year"].iloc[0] == "1970-01-01"
    assert set(result.frame["Origin"]) == {"USA", "Europe", "Japan"}
