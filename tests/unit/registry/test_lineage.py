"""Data lineage on runs and models, ``describe_version``, and one-line errors for unreachable stores."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from fasttrack.config import Settings
from fasttrack.errors import ModelNotFoundError, RegistryError
from fasttrack.registry import tracking
from fasttrack.registry.model_folder import read_metadata
from fasttrack.training.train import TrainResult
from support import free_port

LINEAGE = {"kind": "object", "etag": "9b2cf535f27731c974343645a3985328", "version_id": "3HL4kqtJlcpXroDTDmJ"}


def test_lineage_is_recorded_on_the_run_and_in_the_model(good_result: TrainResult, settings: Settings) -> None:
    run = tracking.log_training(
        good_result, settings=settings, source="s3://data/toy.csv", fingerprint="f" * 64, lineage=LINEAGE
    )
    tags = tracking.client(settings).get_run(run.run_id).data.tags
    assert tags["fasttrack.data.source"] == "s3://data/toy.csv"
    assert tags["fasttrack.data.etag"] == LINEAGE["etag"]
    assert tags["fasttrack.data.version_id"] == LINEAGE["version_id"]
    assert tags["fasttrack.data.kind"] == "object"
    assert tags["fasttrack.data.rows"] == str(good_result.train_rows + good_result.test_rows)

    data = read_metadata(tracking.resolve_model("models:/toy/1", settings).path).data
    assert (data.source, data.fingerprint) == ("s3://data/toy.csv", "f" * 64)
    assert data.model_dump()["etag"] == LINEAGE["etag"]
    assert data.model_dump()["version_id"] == LINEAGE["version_id"]


def test_the_held_out_part_is_logged(good_result: TrainResult, settings: Settings, tmp_path: object) -> None:
    import mlflow

    run = tracking.log_training(good_result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)
    path = mlflow.artifacts.download_artifacts(
        run_id=run.run_id, artifact_path=tracking.HOLDOUT_ARTIFACT, dst_path=str(tmp_path)
    )
    holdout = pd.read_parquet(path)
    assert list(holdout.columns) == [*good_result.X_test.columns, "label"]
    assert len(holdout) == good_result.test_rows
    assert holdout["label"].tolist() == good_result.y_test.tolist()
    pd.testing.assert_frame_equal(holdout[["a", "b"]], good_result.X_test[["a", "b"]])


def test_describe_version_by_number_and_alias(
    good_result: TrainResult, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking.log_training(
        good_result, settings=settings, source="s3://data/toy.csv", fingerprint="f" * 64, lineage=LINEAGE
    )
    details = tracking.describe_version(settings, "toy", "champion")
    assert (details.version, details.aliases) == ("1", ["champion"])
    assert details.lineage["etag"] == LINEAGE["etag"]
    assert details.lineage["source"] == "s3://data/toy.csv"
    assert details.metrics["test_accuracy"] == pytest.approx(good_result.evaluation.metrics["accuracy"])
    assert details.tags["fasttrack.primary_metric"] == "roc_auc"
    assert tracking.describe_version(settings, "toy", "1").run_id == details.run_id

    # Without the run (deleted for good), the model folder still knows its data.
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    def gone(*_: object) -> None:
        raise MlflowException("run not found", error_code="RESOURCE_DOES_NOT_EXIST")

    monkeypatch.setattr(MlflowClient, "get_run", gone)
    assert tracking.describe_version(settings, "toy", "1").lineage["etag"] == LINEAGE["etag"]
    with pytest.raises(ModelNotFoundError):
        tracking.describe_version(settings, "toy", "7")


def test_an_unreachable_tracking_server_fails_fast_in_one_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    url = f"http://127.0.0.1:{free_port()}"
    unreachable = settings.model_copy(update={"tracking_uri": url})
    started = time.monotonic()
    try:
        with pytest.raises(RegistryError) as caught:
            tracking.list_versions(unreachable)
    finally:
        tracking.configure(settings)  # MLflow's process-wide URIs: not left pointing at a closed port
    assert time.monotonic() - started < 20
    message = str(caught.value)
    assert message.startswith(f"listing models: cannot reach the tracking server at {url}")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("exc", "needle"),
    [
        (ClientError({"Error": {"Code": "NoSuchBucket", "Message": "no bucket"}}, "GetObject"), "bucket not found"),
        (ClientError({"Error": {"Code": "InvalidAccessKeyId", "Message": "unknown key"}}, "PutObject"), "credentials"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "cannot reach the object store"),
    ],
)
def test_artifact_store_errors_become_registry_errors(exc: Exception, needle: str) -> None:
    with pytest.raises(RegistryError, match=needle) as caught, tracking.registry_errors("downloading the model"):
        raise exc
    assert str(caught.value).startswith("downloading the model: ")


def test_mlflow_download_failures_become_one_line() -> None:
    from mlflow.exceptions import MlflowException

    message = (
        "The following failures occurred while downloading one or more artifacts from s3://data/:\n"
        "##### File model #####\nAn error occurred (404) when calling the HeadObject operation: Not Found"
    )
    with pytest.raises(ModelNotFoundError) as caught, tracking.registry_errors("downloading s3://data/model"):
        raise MlflowException(message)
    assert str(caught.value) == "downloading s3://data/model: not found: s3://data/model"
