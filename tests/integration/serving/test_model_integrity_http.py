"""Safe model loading against a real server and a real MLflow store (SQLite): a broken or altered version is
refused at reload while the old one keeps serving, and once the store is repaired it loads without anyone deleting
the model cache by hand (issue 17)."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest

from fasttrack.registry import manifest
from support import free_port, mlflow_client, register_copy, run_cli, serve, serving_settings

pytestmark = pytest.mark.integration

RECORD = {"feature_1": 5.3, "feature_2": 2.1}


def stored_copy(home: Path, folder: Path) -> Path:
    """A model folder of its own in the artifact store (a copy of ``sample`` version 1, manifest included)."""
    from fasttrack.registry.resolve import resolve_model

    shutil.copytree(resolve_model("models:/sample/1", serving_settings(home)).path, folder)
    return folder


def register_folder(home: Path, name: str, folder: Path) -> str:
    """Register ``folder`` as the next version of ``name`` and point ``champion`` at it."""
    client = mlflow_client(home)
    created = client.create_model_version(name, source=str(folder.resolve()))
    client.set_registered_model_alias(name, "champion", created.version)
    return str(created.version)


def reload(url: str) -> dict[str, str]:
    answer: dict[str, str] = httpx.post(url + "/admin/reload", json={}, timeout=60).json()
    return answer


def served_version(url: str) -> str:
    response = httpx.post(url + "/predict", json=RECORD, timeout=30)
    assert response.status_code == 200, response.text
    return response.headers["X-Model-Version"]


@pytest.mark.parametrize("with_manifest", [True, False], ids=["manifest", "older-folder"])
def test_a_garbage_onnx_is_refused_the_old_version_serves_and_the_repaired_store_loads(
    model_home: Path, tmp_path: Path, with_manifest: bool
) -> None:
    """A garbage model.onnx was counted as a successful reload (scikit-learn unpickled with a warning), and the
    failed copy stayed in the cache, so the repaired store was never read again."""
    name = f"integrity-{uuid.uuid4().hex[:8]}"
    register_copy(model_home, name, alias="champion")
    folder = stored_copy(model_home, tmp_path / "v2")
    if not with_manifest:
        (folder / manifest.MANIFEST_FILE).unlink()
    graph = (folder / "extra_files" / "model.onnx").read_bytes()
    (folder / "extra_files" / "model.onnx").write_bytes(b"garbage, not an ONNX graph")
    with serve("--model", f"models:/{name}@champion", "--reload-interval", "0", home=model_home) as server:
        assert served_version(server.url) == "1"
        broken = register_folder(model_home, name, folder)
        refused = reload(server.url)
        assert (refused["outcome"], refused["version"]) == ("refused", "1")
        # refused while downloading (the cache checks the manifest: no candidate was loaded) or while loading
        assert refused["candidate"] in (None, broken)
        expected = (
            "extra_files/model.onnx changed since registration"
            if with_manifest
            else "cannot load the ONNX model extra_files/model.onnx"
        )
        assert expected in refused["error"]
        assert served_version(server.url) == "1"
        assert "predicting with scikit-learn" not in server.output()  # no silent fall-back
        metrics = httpx.get(server.url + "/metrics").text
        assert f'fasttrack_model_reloads_total{{model="{name}",outcome="failure",version="1"}} 1.0' in metrics

        (folder / "extra_files" / "model.onnx").write_bytes(graph)  # the store repaired; the cache untouched
        reloaded = reload(server.url)
        assert (reloaded["outcome"], reloaded["version"]) == ("reloaded", broken), reloaded
        assert served_version(server.url) == broken


def test_a_tampered_version_stops_a_fresh_serve_until_the_store_is_repaired(model_home: Path, tmp_path: Path) -> None:
    """A fresh ``serve`` of a refused version exited 1 until its cached copy was deleted by hand."""
    name = f"tampered-{uuid.uuid4().hex[:8]}"
    mlflow_client(model_home).create_registered_model(name)
    folder = stored_copy(model_home, tmp_path / "v1")
    schema = folder / "extra_files" / "schema.json"
    original = schema.read_bytes()
    schema.write_bytes(original.replace(b'"feature_1"', b'"feature_X"', 1))  # an altered file, still valid JSON
    version = register_folder(model_home, name, folder)
    uri = f"models:/{name}/{version}"
    result = run_cli("serve", "--model", uri, "--port", str(free_port()), home=model_home, timeout=120)
    assert result.returncode == 1, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "extra_files/schema.json changed since registration" in line

    schema.write_bytes(original)  # repaired in the store; nobody touches ~/.fasttrack/models
    with serve("--model", uri, home=model_home) as server:
        assert served_version(server.url) == version


def test_a_cached_copy_altered_on_disk_is_refused_then_fetched_again(model_home: Path, tmp_path: Path) -> None:
    name = f"cached-{uuid.uuid4().hex[:8]}"
    register_copy(model_home, name, alias="champion")
    folder = stored_copy(model_home, tmp_path / "v2")
    with serve("--model", f"models:/{name}@champion", "--reload-interval", "0", home=model_home) as server:
        version = register_folder(model_home, name, folder)
        from fasttrack.registry.resolve import resolve_model

        cached = resolve_model(f"models:/{name}/{version}", serving_settings(model_home)).path  # fills the cache
        assert cached.is_relative_to(model_home / "models")
        (cached / "extra_files" / "model.onnx").write_bytes(b"altered in the cache")
        refused = reload(server.url)
        assert refused["outcome"] == "refused"
        assert "extra_files/model.onnx changed since registration" in refused["error"]
        assert served_version(server.url) == "1"
        time.sleep(0.1)
        reloaded = reload(server.url)  # the altered copy was dropped: this one comes from the store again
        assert (reloaded["outcome"], reloaded["version"]) == ("reloaded", version), reloaded
