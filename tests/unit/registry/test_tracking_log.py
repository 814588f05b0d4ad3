"""How log_training writes a run: every param, tag and metric in one batch, and the model's requirements."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from fasttrack.config import Settings, TrainConfig
from fasttrack.data.describe import infer_schema
from fasttrack.export import check as fx
from fasttrack.export import onnx as export_onnx
from fasttrack.features.frames import prepare_features
from fasttrack.registry import tracking
from fasttrack.registry.model_folder import ONNX_FILE, load_model_folder
from fasttrack.runtime.model import Model, ModelIdentity
from fasttrack.runtime.select import open_runtime
from fasttrack.training.train import TrainResult, train


def test_params_tags_and_metrics_go_in_one_batch(
    good_result: TrainResult, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[tuple[int, int, set[str]]] = []
    log_batch = MlflowClient.log_batch

    def recording(
        self: MlflowClient, run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **kw: Any
    ) -> Any:
        batches.append((len(metrics), len(params), {tag.key for tag in tags}))
        return log_batch(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(MlflowClient, "log_batch", recording)
    run = tracking.log_training(good_result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)
    metrics, params, tags = batches[0]
    assert (metrics, params) == (len(tracking._metrics(good_result)), len(tracking._params(good_result)))
    assert {"fasttrack.task", "fasttrack.gate", "fasttrack.data.fingerprint", fx.TAG_ONNX} <= tags

    recorded = tracking.client(settings).get_run(run.run_id).data
    assert recorded.params == {k: str(v) for k, v in tracking._params(good_result).items()}
    assert recorded.metrics == pytest.approx(tracking._metrics(good_result))
    assert recorded.tags[fx.TAG_ONNX] == "ok"
    assert recorded.tags["fasttrack.data.source"] == "memory://toy.csv"
    assert recorded.tags["fasttrack.version.scikit-learn"]


def trained(model: str, **params: Any) -> TrainResult:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    frame["label"] = np.where(frame["a"] > frame["b"], "yes", "no")
    values = {"data": "memory://toy.csv", "target": "label", "model": model, "params": params, "cv_folds": 0}
    return train(frame, TrainConfig.model_validate(values), infer_schema(frame, "label", "auto"))


def test_only_xgboost_models_require_xgboost() -> None:
    linear = tracking._pip_requirements(trained("linear").pipeline)
    assert [r.split("==")[0] for r in linear] == ["scikit-learn", "numpy", "pandas", "cloudpickle"]
    xgb = tracking._pip_requirements(trained("xgboost", n_estimators=5, n_jobs=1).pipeline)
    assert [r.split("==")[0] for r in xgb] == ["scikit-learn", "numpy", "pandas", "cloudpickle", "xgboost-cpu"]


def test_registration_stores_the_onnx_model(good_result: TrainResult, settings: Settings) -> None:
    run = tracking.log_training(good_result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)
    assert run.registered
    loaded = load_model_folder(tracking.resolve_model("models:/toy/1", settings).path)
    assert loaded.onnx_path is not None and loaded.onnx_path.name == ONNX_FILE
    info = loaded.metadata.onnx
    assert info is not None
    assert (info.status, info.mismatches, info.rows_checked) == ("ok", 0, good_result.test_rows)
    assert {"onnxruntime", "skl2onnx"} <= set(info.libraries)
    assert tracking.client(settings).get_run(run.run_id).data.tags[fx.TAG_ONNX] == "ok"

    frame = pd.DataFrame({"a": [2.0, -2.0, None], "b": [-2.0, 2.0, 0.0], "colour": ["red", "purple", None]})
    served = Model(loaded, open_runtime(loaded), ModelIdentity("models:/toy/1", "toy", "1"))
    assert served.runtime.name == "onnx"
    assert (
        served.predict(frame).tolist() == good_result.pipeline.predict(prepare_features(frame, loaded.schema)).tolist()
    )


def test_registration_survives_a_failed_conversion(
    good_result: TrainResult, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> bytes:
        raise ValueError("simulated: cannot convert")

    monkeypatch.setattr(export_onnx, "_convert", broken)
    run = tracking.log_training(good_result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)
    assert run.registered  # served by scikit-learn
    loaded = load_model_folder(tracking.resolve_model("models:/toy/1", settings).path)
    assert loaded.onnx_path is None and open_runtime(loaded).name == "sklearn"
    assert loaded.metadata.onnx is not None and loaded.metadata.onnx.status == "failed"
    tags = tracking.client(settings).get_run(run.run_id).data.tags
    assert tags[fx.TAG_ONNX] == "failed"
    assert tags[fx.TAG_ONNX_REASON] == "ValueError: simulated: cannot convert"
