"""A real ``fasttrack serve --auth`` (Uvicorn): keys from a file rotated while it serves, scopes per route, the
access log naming the key's id and never the key, and a key file it cannot read failing before the port is bound.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from fasttrack.serving.keys import NewKey, new_key
from support import one_line_error, run_cli, serve

pytestmark = pytest.mark.integration

RECORD = {"feature_1": 5.3, "feature_2": 2.1}


def write_keys(file: Path, *keys: NewKey) -> None:
    """Replace the key file atomically, as docs/security.md asks."""
    temporary = file.with_suffix(".new")
    temporary.write_text("# id:scopes:sha256\n" + "".join(k.entry + "\n" for k in keys), encoding="utf-8")
    temporary.replace(file)


def test_a_server_with_keys_on(model_home: Path, tmp_path: Path) -> None:
    client, operator, successor = (
        new_key("client", ["predict"]),
        new_key("ops", ["admin"]),
        new_key("client-2", ["predict"]),
    )
    file = tmp_path / "keys.txt"
    write_keys(file, client, operator)
    with serve(
        "--model", "models:/sample@champion", "--auth", "--api-keys-file", str(file), "--access-log", home=model_home
    ) as server:
        url = server.url
        assert httpx.get(url + "/health").status_code == 200  # probes stay open by default
        refused = httpx.post(url + "/predict", json=RECORD)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        answer = httpx.post(url + "/predict", json=RECORD, headers={"Authorization": f"Bearer {client.secret}"})
        assert answer.json() == {"prediction": "positive"}
        assert httpx.post(url + "/admin/reload", json={}, headers={"X-API-Key": client.secret}).status_code == 403
        admin = {"X-API-Key": operator.secret}
        page = httpx.post(url + "/admin/reload", content=b"{}", headers={**admin, "Content-Type": "text/plain"})
        assert page.status_code == 415
        assert httpx.post(url + "/admin/reload", json={}, headers=admin, timeout=60).json()["outcome"] == "unchanged"

        write_keys(file, client, successor, operator)  # rotation: both client keys in force for a while
        time.sleep(1.5)  # the server looks at the file once a second
        for key in (client, successor):
            assert httpx.post(url + "/predict", json=RECORD, headers={"X-API-Key": key.secret}).status_code == 200
        write_keys(file, successor, operator)
        time.sleep(1.5)
        assert httpx.post(url + "/predict", json=RECORD, headers={"X-API-Key": client.secret}).status_code == 401
        assert httpx.post(url + "/predict", json=RECORD, headers={"X-API-Key": successor.secret}).status_code == 200
        metrics = httpx.get(url + "/metrics").text
        assert "fasttrack_api_keys 2.0" in metrics
        assert 'fasttrack_auth_refused_total{key="client",reason="scope"} 1.0' in metrics
        time.sleep(0.2)
    output = server.output()
    assert '"key":"client"' in output and '"key":"ops"' in output and '"status":401' in output
    assert "API key file" in output and "reloaded: 2 keys" in output
    for key in (client, operator, successor):
        assert key.secret not in output and key.secret not in metrics


def test_a_key_file_it_cannot_read_fails_before_binding(model_home: Path, tmp_path: Path) -> None:
    result = run_cli(
        "serve",
        "--model",
        "models:/sample@champion",
        "--auth",
        "--api-keys-file",
        str(tmp_path / "nope"),
        home=model_home,
    )
    one_line_error(result, "cannot read the API key file", code=2)
