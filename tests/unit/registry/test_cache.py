"""The local cache of downloaded models (registry.cache): whole folders or nothing, and one-line failures."""

from __future__ import annotations

import os
import shutil
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


def test_a_copy_that_fails_its_manifest_is_removed_and_the_next_fetch_gets_the_repaired_one(
    settings: Settings,
) -> None:
    """Issue 17: a download that failed its check stayed in the cache, so a repaired store was never read again."""
    from fasttrack.registry import manifest

    key = cache.version_key(settings, "toy", "1")
    store = model_folder(settings.home.parent / "store" / "model", "stored")
    (store / "model.onnx").write_bytes(b"graph")
    manifest.write(store)
    (store / "model.onnx").write_bytes(b"garbage")  # the store's copy broken after registration

    def fetch(into: Path) -> Path:
        copy = into / "model"
        shutil.copytree(store, copy)
        return copy

    with pytest.raises(manifest.IntegrityError, match=r"^model folder refused: model\.onnx changed since"):
        cache.fill(settings, key, fetch, source="models:/toy/1")
    assert cache.cached(settings, key) is None
    assert list((settings.home / "models").iterdir()) == []  # neither the copy nor its temporary folder stays
    (store / "model.onnx").write_bytes(b"graph")  # the store repaired: no folder to delete by hand
    assert cache.fill(settings, key, fetch, source="models:/toy/1") == cache.folder_for(settings, key)
    assert (cache.folder_for(settings, key) / "model.onnx").read_bytes() == b"graph"


def test_evict_drops_a_cached_folder_and_nothing_else(settings: Settings, tmp_path: Path) -> None:
    key = cache.version_key(settings, "toy", "1")
    folder = cache.fill(settings, key, lambda into: model_folder(into / "model", "x"), source="models:/toy/1")
    elsewhere = model_folder(tmp_path / "mine", "local")
    assert cache.evict(settings, elsewhere) is False and elsewhere.is_dir()  # a local folder is never deleted
    assert cache.evict(settings, folder) is True
    assert cache.cached(settings, key) is None
    assert list((settings.home / "models").iterdir()) == []
    assert cache.evict(settings, folder) is False  # gone already
