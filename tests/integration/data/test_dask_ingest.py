"""Ingest on a Dask cluster equals single-machine ingest on the same rows: values, report, schema, fingerprint.

Every data set here is written as several files (and small blocks, so files split into several partitions),
then concatenated into one file for :func:`fasttrack.data.ingest.ingest`, the reference.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import pytest

from fasttrack.cluster import dask_client
from fasttrack.data.clean import CleanOptions
from fasttrack.data.dask_ingest import DaskIngestResult, ingest_dask
from fasttrack.data.describe import infer_schema
from fasttrack.data.ingest import IngestResult, ingest
from fasttrack.errors import DataError

pytestmark = pytest.mark.integration

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """One local cluster of two worker processes for the module."""
    with dask_client(workers=2) as started:
        yield started


def messy_lines(n: int, seed: int) -> list[str]:
    """Data rows (CSV text) with every cleaning case; some rows repeat earlier ones exactly."""
    rng = np.random.default_rng(seed)
    colours = [" red", "blue ", "green", "NA", "n/a", " ", "pink"]
    cities = [f"city{k}" for k in range(80)]
    rows = []
    for i in range(n):
        age = str(int(rng.integers(18, 90)))
        age = f" {age}" if i % 17 == 0 else age  # numbers as text, with spaces
        income = f"{rng.normal(50, 10):.3f}"
        flag = ["true", "false", " TRUE", "False"][i % 4]  # booleans as text, stripped
        colour = colours[int(rng.integers(0, len(colours)))]
        city = cities[min(int(rng.exponential(12)), 79)]
        count = "" if i % 23 == 0 else str(int(rng.integers(0, 5)))  # integers with missing values
        target = "?" if i % 31 == 0 else [" yes", "no"][int(rng.integers(0, 2))]
        rows.append([age, income, flag, colour, city, count, "same", f"code{i:06d}", "", target])
    lines = [",".join(row) for row in rows]
    for k in range(0, n, 9):  # exact duplicates, later in the data (often in another file)
        lines.insert(min(len(lines), k + n // 3), lines[k])
    return lines


MESSY_HEADER = "age,income,flag,colour, city,count,const,code,empty, y"


def write_files(folder: Path, header: str, lines: list[str], files: int, tweak: dict[int, str] | None = None) -> Path:
    """``lines`` split into ``files`` CSV files in ``folder`` (and one file of all of them beside it)."""
    folder.mkdir()
    chunks = np.array_split(np.arange(len(lines)), files)
    for number, chunk in enumerate(chunks):
        body = [lines[i] for i in chunk]
        (folder / f"part-{number:03d}.csv").write_text("\n".join([header, *body]) + "\n")
    (folder / "_SUCCESS").write_text("")
    whole = folder.parent / f"{folder.name}.csv"
    whole.write_text("\n".join([header, *lines]) + "\n")
    return whole


def both(
    folder: Path, whole: Path, client: Client, target: str | None, options: CleanOptions | None = None
) -> tuple[DaskIngestResult, IngestResult]:
    distributed = ingest_dask(str(folder), target=target, options=options, blocksize=4000, client=client)
    local = ingest(whole, target=target, options=options)
    return distributed, local


def assert_same(distributed: DaskIngestResult, local: IngestResult, target: str | None) -> None:
    assert distributed.frame.npartitions > 1
    assert distributed.report == local.report
    computed = distributed.frame.compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(computed, local.frame)
    assert distributed.fingerprint == local.fingerprint
    if target is not None:
        reference = infer_schema(
            local.frame,
            local.report.renamed_columns.get(target, target),
            dropped_columns=local.report.dropped_columns,
            missing_markers=CleanOptions().missing_markers,
        )
        assert distributed.schema == reference


def test_messy_csv_files_clean_and_describe_as_one_file(tmp_path: Path, client: Client) -> None:
    lines = messy_lines(1500, seed=1)
    # A column numeric in most files with a marker in one: text everywhere, as in one file.
    marked = lines[1200].split(",")
    marked[1] = "?"
    lines[1200] = ",".join(marked)
    whole = write_files(tmp_path / "messy", MESSY_HEADER, lines, files=5)
    distributed, local = both(tmp_path / "messy", whole, client, target=" y")  # the column as written
    report = local.report
    # The data exercises every rule this test claims to check.
    assert report.duplicates_dropped > 100
    assert report.rows_without_target_dropped > 10
    assert "income" in report.converted_to_numeric  # Arrow reads " 34" as a number itself: age stays as read
    assert "flag" in report.converted_to_boolean
    assert report.missing_markers.keys() >= {"colour", "income", "y"}
    assert report.stripped_values.keys() >= {"flag", "colour", "y"}
    assert report.dropped_columns == {
        "const": "constant",
        "code": "identifier (all values unique)",
        "empty": "constant",
    }
    assert report.renamed_columns == {" city": "city", " y": "y"}
    assert local.frame["count"].dtype == "float64"
    assert distributed.frame.npartitions > 10  # blocks of files, not only files
    assert_same(distributed, local, " y")


def test_regression_target_and_row_numbers(tmp_path: Path, client: Client) -> None:
    rng = np.random.default_rng(3)
    n = 2000
    lines = [
        f"{i + 1},{rng.normal(100, 30):.2f},{['a', 'b', 'c'][i % 3]},{int(rng.integers(0, 1000))},"
        f"{'' if i % 50 == 0 else round(float(rng.gamma(2, 2)), 1)}"
        for i in range(n)
    ]
    whole = write_files(tmp_path / "tidy", "row,price,kind,zeros,value", lines, files=4)
    distributed, local = both(tmp_path / "tidy", whole, client, target="value")
    assert local.report.dropped_columns == {"row": "identifier (all values unique)"}
    assert local.report.rows_without_target_dropped == 40
    assert_same(distributed, local, "value")
    assert distributed.schema is not None and distributed.schema.target.task == "regression"


def test_types_join_across_files_as_arrow_infers_them(tmp_path: Path, client: Client) -> None:
    """0/1 in one file and true/false in another is boolean; integers and floats are floats; integers missing a
    value in one file are floats in all; true/false missing one value is a nullable boolean."""
    header = "bits,mixed,holes,flags,y"
    first = [f"{i % 2},{i},{i},{'true' if i % 3 else 'false'},{'a' if i % 2 else 'b'}" for i in range(300)]
    second = [
        f"{'true' if i % 2 else 'false'},{i}.5,{'' if i == 5 else i},{'' if i == 7 else 'false'},b" for i in range(300)
    ]
    folder = tmp_path / "joined"
    folder.mkdir()
    (folder / "a.csv").write_text("\n".join([header, *first]) + "\n")
    (folder / "b.csv").write_text("\n".join([header, *second]) + "\n")
    whole = tmp_path / "joined.csv"
    whole.write_text("\n".join([header, *first, *second]) + "\n")
    options = CleanOptions(drop_identifiers=False, drop_constant=False, drop_duplicates=False)
    distributed, local = both(folder, whole, client, target="y", options=options)
    assert local.frame.dtypes.astype(str).to_dict() == {
        "bits": "bool",
        "mixed": "float64",
        "holes": "float64",
        "flags": "boolean",
        "y": "str",
    }
    assert_same(distributed, local, "y")


def test_parquet_files(tmp_path: Path, client: Client) -> None:
    rng = np.random.default_rng(5)
    frames = [
        pd.DataFrame(
            {
                "x": rng.normal(size=400),
                "n": pd.Series([" 3", "4", "?", "5"] * 100, dtype="str"),
                "c": pd.Series(rng.choice(["u", "v", "w"], 400), dtype="str"),
                "y": rng.integers(0, 2, 400),
            }
        )
        for _ in range(3)
    ]
    folder = tmp_path / "pq"
    folder.mkdir()
    for number, frame in enumerate(frames):
        frame.to_parquet(folder / f"part-{number}.parquet", index=False)
    whole = tmp_path / "pq.parquet"
    pd.concat(frames, ignore_index=True).to_parquet(whole, index=False)
    distributed = ingest_dask(str(folder), target="y", client=client)
    local = ingest(whole, target="y")
    assert distributed.frame.npartitions == 3
    assert "n" in local.report.converted_to_numeric
    assert_same_parquet = distributed.report == local.report
    assert assert_same_parquet
    pd.testing.assert_frame_equal(distributed.frame.compute().reset_index(drop=True), local.frame)
    assert distributed.fingerprint == local.fingerprint
    assert distributed.schema == infer_schema(local.frame, "y")


def test_files_with_other_columns_are_refused(tmp_path: Path, client: Client) -> None:
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "a.csv").write_text("x,y\n1,2\n")
    (folder / "b.csv").write_text("x,z\n1,2\n")
    with pytest.raises(DataError, match="other columns"):
        ingest_dask(str(folder), target="y", client=client)


def test_every_row_missing_its_target_is_refused(tmp_path: Path, client: Client) -> None:
    folder = tmp_path / "none"
    folder.mkdir()
    (folder / "a.csv").write_text("x,y\n1,?\n2,\n")
    with pytest.raises(DataError, match="every row is missing the target"):
        ingest_dask(str(folder), target="y", client=client)


@pytest.mark.parametrize(("name", "target"), [("adult.csv", "income"), ("housing.csv", "median_house_value")])
def test_real_data_set_split_into_files(
    datasets_dir: Path, tmp_path: Path, client: Client, name: str, target: str
) -> None:
    lines = (datasets_dir / name).read_text().splitlines()
    folder = tmp_path / "real"
    folder.mkdir()
    for number, chunk in enumerate(np.array_split(np.arange(1, len(lines)), 4)):
        (folder / f"part-{number}.csv").write_text("\n".join([lines[0], *(lines[i] for i in chunk)]) + "\n")
    distributed = ingest_dask(str(folder), target=target, blocksize=300_000, client=client)
    local = ingest(datasets_dir / name, target=target)
    assert_same(distributed, local, target)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_schema_of_awkward_values_over_many_partitions(client: Client, seed: int) -> None:
    """Ties, a minimum filling a quantile bin, few distinct values, missing values, booleans with and without
    missing values, many categories: the distributed schema is the single-machine one, float for float."""
    from fasttrack.data.dask_describe import infer_schema_dask

    rng = np.random.default_rng(seed)
    n = 3000
    mostly_zero = np.where(rng.random(n) < 0.7, 0.0, rng.gamma(1.0, 300.0, n))
    gaps = rng.normal(size=n)
    gaps[rng.random(n) < 0.1] = np.nan
    frame = pd.DataFrame(
        {
            "amount": mostly_zero,
            "ties": rng.integers(0, 4, n),
            "gaps": gaps,
            "tiny": np.full(n, 5.0) + (np.arange(n) == 17),
            "flag": rng.random(n) < 0.3,
            "maybe": pd.array(np.where(rng.random(n) < 0.1, None, rng.random(n) < 0.5), dtype="boolean"),
            "city": pd.Series(rng.choice([f"c{k}" for k in range(300)], n, p=_zipf(300)), dtype="str"),
            "y": pd.Series(rng.choice(["a", "b", "c"], n), dtype="str"),
        }
    )
    distributed = as_dask(frame, 13)
    for target in ("y", "amount", "ties"):
        expected = infer_schema(frame, target, max_categories=20, min_category_count=3, profile_bins=7)
        found = infer_schema_dask(
            distributed, target, max_categories=20, min_category_count=3, profile_bins=7, client=client
        )
        assert found == expected


def as_dask(frame: pd.DataFrame, partitions: int) -> dd.DataFrame:
    """``frame`` in partitions, text keeping pandas' own ``str`` dtype as ingest gives it (Dask would convert it)."""
    import dask
    import dask.dataframe as dd

    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_pandas(frame, npartitions=partitions, sort=False)


def _zipf(k: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1)
    return np.asarray(weights / weights.sum())


@pytest.mark.parametrize(
    ("frame", "target", "task", "message"),
    [
        (pd.DataFrame({"x": [1.0, np.inf, 2.0, 3.0], "y": [0, 1, 0, 1]}), "y", "auto", "1 infinite values"),
        (pd.DataFrame({"x": [1, 2, 3, 4], "y": ["a"] * 4}), "y", "auto", "only one class"),
        (pd.DataFrame({"x": [1, 2, 3, 4], "y": ["a", "b", "a", "b"]}), "y", "regression", "not numeric"),
        (pd.DataFrame({"x": [1, 2, 3, 4], "y": [0.5, np.inf, 1.0, 2.0]}), "y", "regression", "infinite values"),
        (pd.DataFrame({"y": [0, 1, 0, 1]}), "y", "auto", "no feature columns"),
    ],
)
def test_schema_errors_are_the_single_machine_ones(
    client: Client, frame: pd.DataFrame, target: str, task: Literal["auto", "regression"], message: str
) -> None:
    from fasttrack.data.dask_describe import infer_schema_dask

    with pytest.raises(DataError, match=message) as local:
        infer_schema(frame, target, task)
    with pytest.raises(DataError, match=message) as distributed:
        infer_schema_dask(as_dask(frame, 2), target, task, client=client)
    assert str(distributed.value) == str(local.value)


def test_gzipped_csv_files_and_parquet_files_of_other_dtypes(tmp_path: Path, client: Client) -> None:
    """Compressed CSV files are one partition each; a Parquet column of integers in one file and floats with a
    missing value in another is floats, as concatenating the files gives."""
    import gzip

    lines = messy_lines(400, seed=7)
    whole = write_files(tmp_path / "plain", MESSY_HEADER, lines, files=3)
    zipped = tmp_path / "zipped"
    zipped.mkdir()
    for path in sorted((tmp_path / "plain").glob("part-*.csv")):
        (zipped / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes()))
    distributed, local = both(zipped, whole, client, target="y")
    assert distributed.frame.npartitions == 3
    assert_same(distributed, local, "y")

    first = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "a"]})
    second = pd.DataFrame({"x": [4.5, np.nan, 6.0], "y": ["b", "a", "b"]})
    folder = tmp_path / "pq"
    folder.mkdir()
    first.to_parquet(folder / "a.parquet", index=False)
    second.to_parquet(folder / "b.parquet", index=False)
    pd.concat([first, second], ignore_index=True).to_parquet(tmp_path / "pq.parquet", index=False)
    options = CleanOptions(drop_identifiers=False)
    distributed = ingest_dask(str(folder), target="y", options=options, client=client)
    local = ingest(tmp_path / "pq.parquet", target="y", options=options)
    assert local.frame["x"].dtype == "float64"
    assert distributed.report == local.report
    pd.testing.assert_frame_equal(distributed.frame.compute().reset_index(drop=True), local.frame)
    assert distributed.fingerprint == local.fingerprint


def test_without_a_target(tmp_path: Path, client: Client) -> None:
    """Data to score has no target: nothing is dropped for one, no schema is made, the rest is cleaned alike."""
    whole = write_files(tmp_path / "scoring", MESSY_HEADER, messy_lines(600, seed=9), files=3)
    distributed, local = both(tmp_path / "scoring", whole, client, target=None)
    assert distributed.schema is None
    assert local.report.rows_without_target_dropped == 0
    assert_same(distributed, local, None)


def test_the_python_api_and_the_command_read_on_dask(tmp_path: Path, client: Client) -> None:
    import subprocess
    import sys

    import fasttrack

    folder = tmp_path / "parts"
    whole = write_files(folder, MESSY_HEADER, messy_lines(3000, seed=7), files=3)
    local = fasttrack.ingest(whole, target="y")
    distributed = fasttrack.ingest(
        str(folder), target="y", engine="dask", scheduler=client, output=str(tmp_path / "cleaned")
    )
    assert (distributed.report, distributed.fingerprint, distributed.schema) == (
        local.report,
        local.fingerprint,
        local.schema,
    )
    saved = pd.read_parquet(tmp_path / "cleaned")  # the parts, in order; _SUCCESS is skipped by readers
    pd.testing.assert_frame_equal(saved, local.frame, check_dtype=False)
    assert (tmp_path / "cleaned" / "_SUCCESS").is_file()

    address = client.scheduler_info()["address"]
    command = [sys.executable, "-m", "fasttrack", "ingest", str(folder), "--target", "y", "--engine", "dask"]
    done = subprocess.run([*command, "--scheduler", address], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert f"fingerprint: {local.fingerprint}" in done.stdout
    refused = subprocess.run(
        [*command, "--scheduler", "tcp://127.0.0.1:9"], capture_output=True, text=True, timeout=120, check=False
    )
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert [line for line in refused.stderr.splitlines() if line.strip()][-1].startswith(
        "error: cannot reach the Dask scheduler at tcp://127.0.0.1:9"
    )
