"""``dataset from-log`` and ``report drift`` read an inference log under an ``s3://`` prefix (moto_server, a real
S3-compatible HTTP server), with the endpoint and credentials of the environment, as data sources do."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from inference_log import START, log_served, mixed_home, write_feedback
from services import Moto
from support import mixed_frame, one_line_error, run_cli

pytestmark = pytest.mark.integration

BUCKET = "fasttrack-log"


@pytest.fixture(scope="module")
def s3_log(moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    """``mixed`` version 1's log of 600 predictions, a label for every third, uploaded under s3://BUCKET/log."""
    home = mixed_home(tmp_path_factory.getbasetemp())
    local = tmp_path_factory.mktemp("s3-log")
    served = mixed_frame(600, seed=41)
    ids, _ = log_served(local, home, "1", served)
    chosen = ids[::3]
    write_feedback(
        local,
        "mixed",
        "1",
        chosen,
        served["label"].iloc[::3].tolist(),
        times=[START + dt.timedelta(days=1)] * len(chosen),
    )
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    for path in local.rglob("*.parquet"):
        s3.upload_file(str(path), BUCKET, f"log/{path.relative_to(local).as_posix()}")  # type: ignore[attr-defined]
    return home, f"s3://{BUCKET}/log", len(chosen)


def test_dataset_and_report_from_an_s3_log(moto: Moto, s3_log: tuple[Path, str, int], tmp_path: Path) -> None:
    home, log, labelled = s3_log
    output = tmp_path / "labelled.parquet"
    made = run_cli("dataset", "from-log", "mixed", "--log", log, "--out", str(output), home=home, **moto.env())
    assert made.returncode == 0, made.stderr
    assert f"{labelled} labelled, {600 - labelled} without a label (left out)" in made.stdout
    assert len(pd.read_parquet(output)) == labelled
    report = tmp_path / "drift.html"
    drawn = run_cli(
        "report", "drift", "mixed", "--out", str(report), home=home, FASTTRACK_INFERENCE_LOG=log, **moto.env()
    )
    assert drawn.returncode == 0, drawn.stderr
    assert 'id="version-1"' in report.read_text(encoding="utf-8")


def test_refused_credentials_are_one_line(moto: Moto, s3_log: tuple[Path, str, int], tmp_path: Path) -> None:
    home, log, _ = s3_log
    env = moto.env(AWS_SECRET_ACCESS_KEY="wrong")
    refused = run_cli(
        "dataset", "from-log", "mixed", "--log", log, "--out", str(tmp_path / "x.parquet"), home=home, **env
    )
    one_line_error(refused, "error:", "refused")
    assert not (tmp_path / "x.parquet").exists()
