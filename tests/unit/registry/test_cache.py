"""The local cache of downloaded models (registry.cache): whole folders or nothing, and one-line failures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fasttrack.config import Settings
from fasttrack.errors import ModelNotFoundError, RegistryError
from fasttrack.registry import cache


def model_folder(folder: Path, marker: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text(f"flavors: {{}}  # {marker}\n")
    return folder


def test_a_fetched_folder_is_cached_once(settings: Settings, tmp_path: Path) -> None:
    key = cache.version_key(settings, "toy", "1")
    assert cache.cached(settings, key) is None
    fetched: list[Path] = []

    def fetch(into: Path) -> Path:
        fetched.append(into)
        return model_folder(into / "model", "mine")

    folder = cache.fill(settings, key, fetch, source="models:/toy/1")
    assert folder == cache.folder_for(settings, key) == cache.cached(settings, key)
    assert (folder / "MLmodel").read_text().endswith("# mine\n")
    assert cache.fill(settings, key, fetch, source="models:/toy/1") == folder
    assert len(fetched) == 1
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # the temporary folder is gone


def test_versions_are_cached_per_tracking_store(settings: Settings) -> None:
    other = settings.model_copy(update={"tracking_uri": "http://mlflow.example:5000"})
    assert cache.version_key(settings, "toy", "1") != cache.version_key(other, "toy", "1")


def test_a_folder_that_is_no_model_is_refused_and_not_cached(settings: Settings) -> None:
    key = cache.version_key(settings, "toy", "1")
    with pytest.raises(ModelNotFoundError, match=r"^s3://b/k is not a model \(no MLmodel file\)$"):
        cache.fill(settings, key, lambda into: into, source="s3://b/k")
    assert cache.cached(settings, key) is None
    assert list((settings.home / "models").iterdir()) == []


def test_the_first_complete_copy_wins(settings: Settings) -> None:
    """Another process finished the same version while this one was fetching: its copy stays, this one goes."""
    key = cache.version_key(settings, "toy", "1")

    def fetch(into: Path) -> Path:
        model_folder(cache.folder_for(settings, key), "theirs")
        return model_folder(into / "model", "mine")

    folder = cache.fill(settings, key, fetch, source="models:/toy/1")
    assert (folder / "MLmodel").read_text().endswith("# theirs\n")
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]


def test_a_missing_artifact_is_not_found(tmp_path: Path) -> None:
    uri = (tmp_path / "no-model").as_uri()
    into = tmp_path / "into"
    into.mkdir()
    with pytest.raises(ModelNotFoundError) as caught:
        cache.download_artifacts(uri, into)
    assert str(caught.value) == f"downloading {uri}: not found: {uri}"


def test_a_download_that_fails_otherwise_is_one_line(tmp_path: Path) -> None:
    """A file the store lists but cannot copy (a named pipe): MLflow reports it only as text; one line of it."""
    folder = model_folder(tmp_path / "model", "x")
    os.mkfifo(folder / "pipe")
    into = tmp_path / "into"
    into.mkdir()
    with pytest.raises(RegistryError) as caught:
        cache.download_artifacts(folder.as_uri(), into)
    message = str(caught.value)
    assert message.startswith(f"downloading {folder.as_uri()}: ")
    assert "named pipe" in message and "\n" not in message
