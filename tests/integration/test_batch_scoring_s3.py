"""Batch scoring streams its input from an S3-compatible store (moto_server), gzip included."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from services import Moto
from support import REPO, run_cli

pytestmark = pytest.mark.integration

BUCKET = "fasttrack-scoring"
SAMPLE = REPO / "data" / "sample" / "classification.csv"


def test_predict_streams_an_s3_csv_through_the_onnx_model(moto: Moto, tmp_path: Path) -> None:
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    s3.upload_file(str(SAMPLE), BUCKET, "in/sample.csv")  # type: ignore[attr-defined]
    s3.put_object(Bucket=BUCKET, Key="in/sample.csv.gz", Body=gzip.compress(SAMPLE.read_bytes()))  # type: ignore[attr-defined]

    home = tmp_path / "home"
    trained = run_cli("train", "-c", "configs/sample.yaml", "--cv-folds", "0", home=home)
    assert trained.returncode == 0, trained.stderr
    expected = pd.read_csv(SAMPLE)
    for key in ("in/sample.csv", "in/sample.csv.gz"):
        output = tmp_path / "scored.parquet"
        args = ["--data", f"s3://{BUCKET}/{key}", "--out", str(output), "--batch-rows", "500"]
        scored = run_cli("predict", "--model", "models:/sample@champion", *args, home=home, **moto.env())
        assert scored.returncode == 0, scored.stderr
        assert f"{len(expected)} predictions written to {output} (onnx," in scored.stdout
        frame = pd.read_parquet(output)
        assert frame["feature_1"].tolist() == expected["feature_1"].tolist()
        assert (frame["prediction"] == frame["label"]).mean() > 0.8

    missing = run_cli(
        "predict", "--data", f"s3://{BUCKET}/nope.csv", "--out", str(tmp_path / "x.csv"), home=home, **moto.env()
    )
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [f"error: file not found: s3://{BUCKET}/nope.csv"]
