"""Model URIs resolved to local folders against a real embedded MLflow store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from fasttrack.config import Settings
from fasttrack.errors import ModelNotFoundError
from fasttrack.registry import cache, mlflow_private, resolve, runs, versions
from fasttrack.registry.model_folder import load_model_folder
from fasttrack.registry.store import client
from fasttrack.training.train import TrainResult


def log(result: TrainResult, settings: Settings) -> runs.TrackedRun:
    return runs.log_training(result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)


@pytest.mark.parametrize(
    ("uri", "version"),
    [("models:/toy@champion", "1"), ("models:/toy/2", "2"), ("models:/toy", "2"), ("models:/toy@challenger", "2")],
)
def test_resolve_model_uris(good_result: TrainResult, settings: Settings, uri: str, version: str) -> None:
    log(good_result, settings)
    log(good_result, settings)
    versions.promote(settings, "toy", "2", alias="challenger")
    resolved = resolve.resolve_model(uri, settings)
    assert (resolved.name, resolved.version) == ("toy", version)
    loaded = load_model_folder(resolved.path)
    assert (loaded.metadata.name, loaded.metadata.labels) == ("toy", ["no", "yes"])
    assert resolve.resolve_model(uri, settings).path == resolved.path  # cached, not downloaded again


@pytest.fixture(params=["tables", "mlflow"])
def through(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Resolve through the embedded store's tables, or through MLflow (as for a store the reader cannot read)."""
    if request.param == "mlflow":
        monkeypatch.setattr(mlflow_private.RegistryReader, "open", classmethod(lambda cls, db: None))
    return str(request.param)


def test_an_unset_champion_is_an_error_naming_it_never_the_latest_version(
    good_result: TrainResult, settings: Settings, through: str
) -> None:
    """A first registration killed before its version took ``@champion`` leaves a version without it: a server of
    ``@champion`` must say so, not serve that version as if it had been promoted (issue 17, the kill -9 finding)."""
    log(good_result, settings)
    client(settings).delete_registered_model_alias("toy", "champion")
    with pytest.raises(
        ModelNotFoundError,
        match=r"^resolving models:/toy@champion: registered model 'toy' has no alias 'champion' \(its latest "
        r"version is 1: serve models:/toy/1, or set it with `fasttrack models promote toy 1`\)$",
    ):
        resolve.resolve_model("models:/toy@champion", settings)
    assert resolve.resolve_model("models:/toy/1", settings).version == "1"


@pytest.mark.parametrize("uri", ["models:/empty@champion", "models:/empty", "models:/empty@staging"])
def test_a_registered_model_without_versions_says_so(settings: Settings, through: str, uri: str) -> None:
    """What a registration killed between creating the registered model and its version leaves."""
    client(settings).create_registered_model("empty")
    with pytest.raises(
        ModelNotFoundError,
        match=rf"^resolving {uri}: registered model 'empty' has no usable version \(a registration did not finish\)",
    ):
        resolve.resolve_model(uri, settings)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("models:/nothing@champion", "no registered model 'nothing'"),
        ("models:/nothing/3", "resolving models:/nothing/3"),
        ("not/a/folder", "neither a folder nor a model URI"),
        ("models:/a/b/c", "cannot parse model URI"),
    ],
)
def test_unknown_models_are_reported(settings: Settings, uri: str, message: str) -> None:
    with pytest.raises(ModelNotFoundError, match=message):
        resolve.resolve_model(uri, settings)


def test_an_unset_alias_other_than_champion_is_not_found(
    good_result: TrainResult, settings: Settings, through: str
) -> None:
    log(good_result, settings)
    with pytest.raises(
        ModelNotFoundError,
        match=r"^resolving models:/toy@staging: registered model 'toy' has no alias 'staging' \(its latest version "
        r"is 1: serve models:/toy/1, or set it first\)$",
    ):
        resolve.resolve_model("models:/toy@staging", settings)


def test_tracking_uri_environment_is_honoured(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/elsewhere.db")
    assert settings.resolved_tracking_uri() == "sqlite:////tmp/elsewhere.db"


def test_a_cached_version_resolves_without_the_registry(
    good_result: TrainResult, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    log(good_result, settings)
    first = resolve.resolve_model("models:/toy/1", settings)

    def offline(*args: object) -> None:
        raise AssertionError("the registry was asked")

    monkeypatch.setattr(resolve, "client", offline)  # through MLflow
    monkeypatch.setattr(mlflow_private.RegistryReader, "open", offline)  # or its tables
    again = resolve.resolve_model("models:/toy/1", settings)  # an explicit version is immutable: the cache answers
    assert (again.path, again.name, again.version, again.alias) == (first.path, "toy", "1", None)
    with pytest.raises(AssertionError, match="registry was asked"):
        resolve.resolve_model("models:/toy@champion", settings)  # an alias may have moved: always asked


def test_the_embedded_store_resolves_without_mlflow(good_result: TrainResult, settings: Settings) -> None:
    """What a server following ``@champion`` does, start and polls alike: no ``import mlflow`` in the process."""
    log(good_result, settings)
    log(good_result, settings)
    versions.promote(settings, "toy", "2")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from fasttrack.config import Settings\n"
        "from fasttrack.registry.resolve import resolve_model\n"
        "settings = Settings(home=Path(sys.argv[1]))\n"
        "for uri in ('models:/toy@champion', 'models:/toy/1', 'models:/toy', 'models:/toy@champion'):\n"
        "    resolved = resolve_model(uri, settings)\n"
        "    print(resolved.version, resolved.path.name, (resolved.path / 'MLmodel').is_file())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'sqlalchemy', 'alembic')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FASTTRACK_"))}
    out = subprocess.run(
        [sys.executable, "-c", script, str(settings.home)], capture_output=True, text=True, check=True, env=env
    ).stdout.splitlines()
    two, one = (cache.folder_for(settings, cache.version_key(settings, "toy", v)).name for v in ("2", "1"))
    assert out == [f"2 {two} True", f"1 {one} True", f"2 {two} True", f"2 {two} True", "[]"]
    # The copies are the folders MLflow's download makes: the same model for MLflow's own resolution.
    assert resolve.resolve_model("models:/toy/2", settings).path.name == two


def test_a_version_stored_elsewhere_is_downloaded_by_mlflow(good_result: TrainResult, settings: Settings) -> None:
    """A version whose location is no local folder (here: only its ``models:/m-...`` source) goes through MLflow."""
    log(good_result, settings)
    with sqlite3.connect(settings.embedded_store()) as connection:
        connection.execute("UPDATE model_versions SET storage_location = NULL")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from fasttrack.config import Settings\n"
        "from fasttrack.registry.resolve import resolve_model\n"
        "resolved = resolve_model('models:/toy@champion', Settings(home=Path(sys.argv[1])))\n"
        "print(resolved.version, (resolved.path / 'MLmodel').is_file(), 'mlflow' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "FASTTRACK_"))}
    out = subprocess.run(
        [sys.executable, "-c", script, str(settings.home)], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.splitlines() == ["1 True True"]
