"""Object storage against a real S3-compatible server (moto_server, with credentials checked).

Training reads ``s3://`` CSV and Parquet files and records the object's ETag and version id; with a real MLflow
server whose artifacts live in a bucket, the model is stored there and served from there; and every way the store
can refuse -- missing bucket, missing key, wrong credentials, unreachable endpoint -- is one line, never a
traceback.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from services import MlflowServer, Moto
from support import REPO, free_port, one_line_error, run_cli, serve

pytestmark = pytest.mark.integration

BUCKET = "fasttrack-data"
SAMPLE = REPO / "data" / "sample" / "classification.csv"
CSV_KEY, PARQUET_KEY = "sample/classification.csv", "sample/classification.parquet"
QUICK = ("--target", "label", "--model", "linear", "--cv-folds", "0")
ROW = {"feature_1": 5.3, "feature_2": 2.1}


@pytest.fixture(scope="module")
def data(moto: Moto, tmp_path_factory: pytest.TempPathFactory) -> Moto:
    """A versioned bucket holding the bundled sample as CSV and as Parquet."""
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})  # type: ignore[attr-defined]
    s3.upload_file(str(SAMPLE), BUCKET, CSV_KEY)  # type: ignore[attr-defined]
    parquet = tmp_path_factory.mktemp("parquet") / "classification.parquet"
    pd.read_csv(SAMPLE).to_parquet(parquet, index=False)
    s3.upload_file(str(parquet), BUCKET, PARQUET_KEY)  # type: ignore[attr-defined]
    return moto


def test_train_from_an_s3_csv_records_its_etag_and_version(data: Moto, tmp_path: Path) -> None:
    home = tmp_path / "home"
    trained = run_cli("train", "--data", f"s3://{BUCKET}/{CSV_KEY}", *QUICK, home=home, **data.env())
    assert trained.returncode == 0, trained.stderr
    assert "registered classification version 1 (alias: champion)" in trained.stdout

    head = data.client().head_object(Bucket=BUCKET, Key=CSV_KEY)  # type: ignore[attr-defined]
    shown = run_cli("models", "show", "classification", "1", home=home)
    assert shown.returncode == 0, shown.stderr
    assert f"source: s3://{BUCKET}/{CSV_KEY}" in shown.stdout
    assert f"etag: {head['ETag'].strip(chr(34))}" in shown.stdout
    assert f"version_id: {head['VersionId']}" in shown.stdout
    assert "kind: object" in shown.stdout

    # The same data read locally has the same fingerprint: lineage identifies content, wherever it is stored.
    local = run_cli("ingest", str(SAMPLE), "--target", "label", home=home)
    fingerprint = next(line for line in local.stdout.splitlines() if line.startswith("fingerprint:"))
    assert fingerprint.split()[1] in shown.stdout


def test_parquet_from_s3_artifacts_in_s3_through_the_mlflow_server_and_served_from_there(
    data: Moto, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    # Data from one store (with this user's credentials), artifacts in the server's: it needs no credentials.
    env = {**data.env(), **mlflow_server.env()}
    trained = run_cli(
        "train", "--data", f"s3://{BUCKET}/{PARQUET_KEY}", *QUICK, "--name", "s3parquet", home=home, **env
    )
    assert trained.returncode == 0, trained.stderr
    assert "registered s3parquet version 1 (alias: champion)" in trained.stdout
    assert mlflow_server.url in trained.stdout

    # The artifacts are objects in the server's bucket, not files on this machine.
    store = mlflow_server.store
    assert store is not None
    bucket, prefix = mlflow_server.artifacts.removeprefix("s3://").split("/", 1)
    listing = store.client().get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    keys = [o["Key"] for page in listing.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]
    mlmodels = [k for k in keys if k.endswith("/MLmodel")]
    assert mlmodels, keys
    assert any(k.endswith("reports/holdout.parquet") for k in keys)
    assert not (home / "artifacts").exists()

    with serve("--model", "models:/s3parquet@champion", home=tmp_path / "server", **mlflow_server.env()) as server:
        response = httpx.post(f"{server.url}/predict", json=ROW, timeout=30)
        assert response.status_code == 200, response.text
        assert response.json() == {"prediction": "positive"}
        assert response.headers["X-Model-Version"] == "1"

    # The model folder straight from the bucket, with the store's credentials and no tracking server at all.
    folder = f"s3://{bucket}/{mlmodels[0].removesuffix('/MLmodel')}"
    evaluated = run_cli("evaluate", "--model", folder, "--data", str(SAMPLE), home=tmp_path / "other", **store.env())
    assert evaluated.returncode == 0, evaluated.stderr
    assert "roc_auc" in evaluated.stdout


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("missing bucket", ["bucket not found: s3://no-such-bucket"]),
        ("missing key", [f"file not found: s3://{BUCKET}/no/such.csv"]),
        ("wrong credentials", ["refused access", "AWS_ACCESS_KEY_ID"]),
        ("unreachable endpoint", ["cannot reach the object store", "AWS_ENDPOINT_URL"]),
    ],
)
def test_object_store_refusals_are_one_line(data: Moto, tmp_path: Path, case: str, needles: list[str]) -> None:
    url, env = f"s3://{BUCKET}/{CSV_KEY}", data.env()
    if case == "missing bucket":
        url = "s3://no-such-bucket/data.csv"
    elif case == "missing key":
        url = f"s3://{BUCKET}/no/such.csv"
    elif case == "wrong credentials":
        env = data.env(AWS_SECRET_ACCESS_KEY="not-the-secret")
    else:
        env = data.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    result = run_cli("train", "--data", url, "--target", "label", home=tmp_path / "home", **env)
    assert time.monotonic() - started < 60
    one_line_error(result, *needles)
    assert "not-the-secret" not in result.stderr


@pytest.mark.parametrize("model", ["s3://no-such-bucket/model", f"s3://{BUCKET}/no/such/model"])
def test_a_missing_model_on_s3_is_one_line(data: Moto, tmp_path: Path, model: str) -> None:
    result = run_cli("evaluate", "--model", model, "--data", str(SAMPLE), home=tmp_path / "home", **data.env())
    line = one_line_error(result, model)
    if "no-such-bucket" not in model:  # the bucket is there: MLflow's listing of the key finds nothing
        assert line == f"error: downloading {model}: not found: {model}"
