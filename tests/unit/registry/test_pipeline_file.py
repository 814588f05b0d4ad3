"""Reading a pipeline file (registry.pipeline_file): skops with trusted types from settings, pickle only if allowed."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import skops.io

from fasttrack.config import Settings
from fasttrack.errors import ModelLoadError
from fasttrack.registry.pipeline_file import (
    DEFAULT_TRUSTED_TYPES,
    MLFLOW_PICKLE_VARIABLE,
    LoadPolicy,
    load_pipeline,
    pickle_refusal,
)
from support import PARAMS, TASKS, fit


@pytest.fixture(autouse=True)
def _no_mlflow_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MLFLOW_PICKLE_VARIABLE, raising=False)


@pytest.mark.parametrize("model", sorted(PARAMS))
def test_every_pipeline_fasttrack_trains_loads_with_the_default_trusted_types(model: str, tmp_path: Path) -> None:
    """DEFAULT_TRUSTED_TYPES is declared in code: this fails when a model kind starts needing another type."""
    for task in TASKS:
        result = fit(model, task)
        file = tmp_path / f"{model}-{task}.skops"
        skops.io.dump(result.pipeline, file)
        assert set(skops.io.get_untrusted_types(file=file)) <= set(DEFAULT_TRUSTED_TYPES)
        loaded = load_pipeline(file, "skops", LoadPolicy())
        frame = result.X_test.head(20)
        assert loaded.predict(frame).tolist() == result.pipeline.predict(frame).tolist()


class Custom:
    """A type nobody trusts."""

    def __init__(self) -> None:
        self.value = 3


def test_a_type_outside_the_trusted_list_is_refused_unless_the_settings_trust_it(tmp_path: Path) -> None:
    file = tmp_path / "custom.skops"
    skops.io.dump({"estimator": Custom()}, file)
    name = f"{__name__}.Custom"
    with pytest.raises(ModelLoadError, match=rf"custom\.skops holds types FastTrack does not trust: {name}; add"):
        load_pipeline(file, "skops", LoadPolicy())
    policy = LoadPolicy.from_settings(Settings(trusted_types=[name]))
    assert name in policy.trusted_types and set(DEFAULT_TRUSTED_TYPES) <= set(policy.trusted_types)
    assert load_pipeline(file, "skops", policy)["estimator"].value == 3


def test_a_damaged_skops_file_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "model.skops"
    file.write_bytes(b"not a zip archive")
    with pytest.raises(ModelLoadError, match=r"^model\.skops: cannot load the model \("):
        load_pipeline(file, "skops", LoadPolicy())


def pickled(tmp_path: Path) -> Path:
    file = tmp_path / "model.pkl"
    file.write_bytes(pickle.dumps({"fitted": True}))
    return file


def test_pickle_is_refused_by_default(tmp_path: Path) -> None:
    assert pickle_refusal(Settings()) == "FASTTRACK_ALLOW_PICKLE is not set"
    with pytest.raises(ModelLoadError, match=r"model\.pkl is a pickle .* refused because FASTTRACK_ALLOW_PICKLE"):
        load_pipeline(pickled(tmp_path), "cloudpickle", LoadPolicy.from_settings(Settings()))


def test_pickle_loads_when_the_setting_allows_it(tmp_path: Path) -> None:
    policy = LoadPolicy.from_settings(Settings(allow_pickle=True))
    assert policy.allows_pickle
    assert load_pipeline(pickled(tmp_path), "pickle", policy) == {"fitted": True}


@pytest.mark.parametrize(("value", "shown"), [("false", "false"), ("0", "false"), ("FALSE", "false"), ("no", "'no'")])
def test_mlflows_switch_refuses_pickle_whatever_fasttrack_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, shown: str
) -> None:
    monkeypatch.setenv(MLFLOW_PICKLE_VARIABLE, value)
    policy = LoadPolicy.from_settings(Settings(allow_pickle=True))
    assert not policy.allows_pickle
    with pytest.raises(ModelLoadError, match=f"refused because {MLFLOW_PICKLE_VARIABLE} is {shown}"):
        load_pipeline(pickled(tmp_path), "pickle", policy)


@pytest.mark.parametrize("value", ["true", "1", "True"])
def test_mlflows_switch_true_does_not_allow_pickle_by_itself(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """MLflow defaults the variable to true, so only FastTrack's own setting can allow pickle."""
    monkeypatch.setenv(MLFLOW_PICKLE_VARIABLE, value)
    assert not LoadPolicy.from_settings(Settings()).allows_pickle
    assert LoadPolicy.from_settings(Settings(allow_pickle=True)).allows_pickle


def test_the_trusted_types_come_from_settings_never_from_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTTRACK_TRUSTED_TYPES", '["mypackage.Scaler"]')
    assert LoadPolicy.from_settings(Settings()).trusted_types == (*DEFAULT_TRUSTED_TYPES, "mypackage.Scaler")
