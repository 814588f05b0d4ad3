"""Data lineage on runs and models, the held-out part, and ``describe_version``."""

from __future__ import annotations

import pandas as pd
import pytest

from fasttrack.config import Settings
from fasttrack.errors import ModelNotFoundError
from fasttrack.registry import runs, versions
from fasttrack.registry.layout import HOLDOUT_ARTIFACT
from fasttrack.registry.model_folder import read_metadata
from fasttrack.registry.resolve import resolve_model
from fasttrack.registry.store import client
from fasttrack.training.train import TrainResult

LINEAGE = {"kind": "object", "etag": "9b2cf535f27731c974343645a3985328", "version_id": "3HL4kqtJlcpXroDTDmJ"}


def test_lineage_is_recorded_on_the_run_and_in_the_model(good_result: TrainResult, settings: Settings) -> None:
    run = runs.log_training(
        good_result, settings=settings, source="s3://data/toy.csv", fingerprint="f" * 64, lineage=LINEAGE
    )
    tags = client(settings).get_run(run.run_id).data.tags
    assert tags["fasttrack.data.source"] == "s3://data/toy.csv"
    assert tags["fasttrack.data.etag"] == LINEAGE["etag"]
    assert tags["fasttrack.data.version_id"] == LINEAGE["version_id"]
    assert tags["fasttrack.data.kind"] == "object"
    assert tags["fasttrack.data.rows"] == str(good_result.train_rows + good_result.test_rows)

    data = read_metadata(resolve_model("models:/toy/1", settings).path).data
    assert (data.source, data.fingerprint) == ("s3://data/toy.csv", "f" * 64)
    assert data.model_dump()["etag"] == LINEAGE["etag"]
    assert data.model_dump()["version_id"] == LINEAGE["version_id"]


def test_the_held_out_part_is_logged(good_result: TrainResult, settings: Settings, tmp_path: object) -> None:
    import mlflow

    run = runs.log_training(good_result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)
    path = mlflow.artifacts.download_artifacts(
        run_id=run.run_id, artifact_path=HOLDOUT_ARTIFACT, dst_path=str(tmp_path)
    )
    holdout = pd.read_parquet(path)
    assert list(holdout.columns) == [*good_result.X_test.columns, "label"]
    assert len(holdout) == good_result.test_rows
    assert holdout["label"].tolist() == good_result.y_test.tolist()
    pd.testing.assert_frame_equal(holdout[["a", "b"]], good_result.X_test[["a", "b"]])


def test_describe_version_by_number_and_alias(
    good_result: TrainResult, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs.log_training(good_result, settings=settings, source="s3://data/toy.csv", fingerprint="f" * 64, lineage=LINEAGE)
    details = versions.describe_version(settings, "toy", "champion")
    assert (details.version, details.aliases) == ("1", ["champion"])
    assert details.lineage["etag"] == LINEAGE["etag"]
    assert details.lineage["source"] == "s3://data/toy.csv"
    assert details.metrics["test_accuracy"] == pytest.approx(good_result.evaluation.metrics["accuracy"])
    assert details.tags["fasttrack.primary_metric"] == "roc_auc"
    assert versions.describe_version(settings, "toy", "1").run_id == details.run_id

    # Without the run (deleted for good), the model folder still knows its data.
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    def gone(*_: object) -> None:
        raise MlflowException("run not found", error_code=RESOURCE_DOES_NOT_EXIST)

    monkeypatch.setattr(MlflowClient, "get_run", gone)
    assert versions.describe_version(settings, "toy", "1").lineage["etag"] == LINEAGE["etag"]
    with pytest.raises(ModelNotFoundError):
        versions.describe_version(settings, "toy", "7")
