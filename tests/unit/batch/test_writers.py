"""The output writers of batch scoring write exactly the text pyarrow's own writers make."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from fasttrack.batch.writers import CsvWriter, _whole_numbers


def test_csv_is_the_text_pyarrow_writes(tmp_path: Path) -> None:
    """The CSV writer's shortcuts (pieces on threads, dictionaries decoded, whole floats as integers) change
    nothing in the text: it is what pyarrow's own writer makes of the whole table."""
    rows = 20_000
    rng = np.random.default_rng(3)
    whole = rng.integers(-1000, 1000, rows).astype(float)
    labels = pa.DictionaryArray.from_arrays(
        pa.array(rng.integers(0, 3, rows).astype(np.int32), mask=rng.random(rows) < 0.1),
        pa.array(["no", 'say "yes", twice', "line\nbreak"]),
    )
    columns = {
        "whole": pa.array(whole, mask=rng.random(rows) < 0.05),
        "fraction": pa.array(rng.normal(0, 1e3, rows)),
        "edges": pa.array(np.resize([0.0, 9_999_999_999.0, 1e10, 2.0**53, -5.0], rows)),
        "zeros": pa.array(np.resize([0.0, -0.0, 3.0], rows)),
        "label": labels,
        "flag": pa.array(rng.random(rows) < 0.5),
        "proba": pa.array(rng.random(rows).astype(np.float32)),
        "text": pa.array(np.resize(["a,b", "", None, " x "], rows).tolist(), pa.string()),
    }
    table = pa.table(columns)
    expected = tmp_path / "expected.csv"
    pa_csv.write_csv(table, expected)
    for threads in (1, 2, 3):
        output = tmp_path / f"threads-{threads}.csv"
        writer = CsvWriter(output, threads=threads)
        for start in range(0, rows, 9_000):  # several tables, as batches arrive, long ones cut into pieces
            writer.write(table.slice(start, 9_000))
        writer.close()
        assert output.read_bytes() == expected.read_bytes(), threads


@pytest.mark.parametrize(
    ("values", "whole"),
    [
        ([1.0, 62.0, -3.0, None, 9_999_999_999.0], True),
        ([0.0, 2.0], True),
        ([0.5, 1.0], False),
        ([1e10], False),  # pyarrow writes 1e+10
        ([-0.0, 1.0], False),  # -0 as a float, 0 as an integer
        ([float("nan"), 1.0], False),
    ],
)
def test_whole_numbers_are_written_as_integers_only_when_the_text_is_the_same(
    values: list[float | None], whole: bool
) -> None:
    column = pa.chunked_array([pa.array(values, pa.float64())])
    converted = _whole_numbers(column)
    assert (converted is not None) == whole
    if converted is not None:
        assert converted.to_pylist() == [None if v is None else int(v) for v in values]
