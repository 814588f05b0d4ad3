"""Ingest on a Dask cluster from ``s3://`` (moto_server, credentials checked): the workers read the objects
themselves, and the result equals single-machine ingest of the same rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from fasttrack.cluster import dask_client
from fasttrack.data.dask_ingest import ingest_dask
from fasttrack.data.describe import infer_schema
from fasttrack.data.ingest import ingest
from services import Moto

if TYPE_CHECKING:
    from distributed import Client

pytestmark = pytest.mark.integration

BUCKET = "fasttrack-dask"


@pytest.fixture(scope="module")
def s3_client(moto: Moto) -> Iterator[Client]:
    """A local cluster whose workers (started with the store's credentials in their environment) read S3."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in moto.env().items():
            patch.setenv(name, value)
        with dask_client(workers=2) as client:
            yield client


def test_a_folder_of_csv_objects(moto: Moto, s3_client: Client, tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    lines = [
        f"{rng.integers(0, 9)},{' ?' if i % 40 == 0 else round(float(rng.normal()), 3)},"
        f"{['a', 'b ', 'c'][i % 3]},{['no', 'yes'][int(rng.integers(0, 2))]}"
        for i in range(900)
    ]
    lines += lines[:30]  # duplicates in another object
    header = "n,x,c,y"
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    for number, chunk in enumerate(np.array_split(np.arange(len(lines)), 3)):
        body = "\n".join([header, *(lines[i] for i in chunk)]) + "\n"
        s3.put_object(Bucket=BUCKET, Key=f"set/part-{number}.csv", Body=body.encode())  # type: ignore[attr-defined]
    s3.put_object(Bucket=BUCKET, Key="set/_SUCCESS", Body=b"")  # type: ignore[attr-defined]
    whole = tmp_path / "whole.csv"
    whole.write_text("\n".join([header, *lines]) + "\n")

    distributed = ingest_dask(f"s3://{BUCKET}/set/", target="y", client=s3_client)
    local = ingest(whole, target="y")
    assert distributed.lineage == {"kind": "dataset", "format": "csv", "files": "3"}
    assert local.report.duplicates_dropped >= 30
    assert distributed.report == local.report
    pd.testing.assert_frame_equal(distributed.frame.compute().reset_index(drop=True), local.frame)
    assert distributed.fingerprint == local.fingerprint
    assert distributed.schema == infer_schema(local.frame, "y", dropped_columns=local.report.dropped_columns)
