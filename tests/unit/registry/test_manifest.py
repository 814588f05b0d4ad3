"""The model folder's manifest (registry.manifest): every file's SHA-256, and a refusal naming the file that differs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from fasttrack.registry import manifest


def folder_of(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "extra_files").mkdir(parents=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "model.skops").write_bytes(b"pipeline bytes")
    (folder / "extra_files" / "model.onnx").write_bytes(b"graph bytes")
    return folder


def test_the_manifest_lists_every_file_with_its_sha256(tmp_path: Path) -> None:
    folder = folder_of(tmp_path)
    written = manifest.write(folder)
    body = json.loads(written.read_text())
    assert body["algorithm"] == "sha256"
    assert body["files"] == {
        "MLmodel": hashlib.sha256(b"flavors: {}\n").hexdigest(),
        "extra_files/model.onnx": hashlib.sha256(b"graph bytes").hexdigest(),
        "model.skops": hashlib.sha256(b"pipeline bytes").hexdigest(),
    }
    assert manifest.verify(folder) is True
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_folder_without_a_manifest_is_unchecked(tmp_path: Path) -> None:
    assert manifest.verify(folder_of(tmp_path)) is False


def test_what_mlflow_adds_to_a_download_is_not_a_change(tmp_path: Path) -> None:
    folder = folder_of(tmp_path)
    manifest.write(folder)
    (folder / "registered_model_meta").write_text("model_name: x\nmodel_version: '1'\n")
    assert manifest.verify(folder) is True


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "extra_files" / "model.onnx").write_bytes(b"garbage"), "extra_files/model.onnx changed"),
        (lambda f: (f / "model.skops").unlink(), "model.skops is missing"),
        (lambda f: (f / "extra_files" / "evil.py").write_text("import os"), "extra_files/evil.py was added"),
        (lambda f: (f / manifest.MANIFEST_FILE).write_text("{not json"), "cannot be read"),
        (lambda f: (f / manifest.MANIFEST_FILE).write_text('{"format": 99, "files": {}}'), "cannot be read"),
    ],
)
def test_a_changed_missing_or_added_file_is_refused_by_name(tmp_path: Path, damage: object, message: str) -> None:
    folder = folder_of(tmp_path)
    manifest.write(folder)
    damage(folder)  # type: ignore[operator]
    with pytest.raises(manifest.IntegrityError, match=message) as refused:
        manifest.verify(folder)
    assert str(folder) not in str(refused.value)  # the reason names the file, never a local path
