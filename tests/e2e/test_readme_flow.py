"""The README's flow, end to end: train the bundled sample, serve it, and call it as the README shows."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest

from support import REPO, run_cli, serve

pytestmark = pytest.mark.e2e

README = (REPO / "README.md").read_text(encoding="utf-8")


def readme_curl() -> tuple[str, dict[str, object], dict[str, object]]:
    """The README's curl example: its path, its JSON body and the response the README promises."""
    match = re.search(r"```bash\n(curl -X POST [^`]*?)\n# (\{.*?\})\n```", README, re.S)
    assert match, "the README has no curl example followed by its response"
    words = shlex.split(match.group(1).replace("\\\n", " "))
    url = next(w for w in words if w.startswith("http"))
    body = json.loads(words[words.index("-d") + 1])
    return url.split("8000", 1)[1], body, json.loads(match.group(2))


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make run", "make test"]


def test_make_help_lists_every_target() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    phony = set(re.search(r"^\.PHONY: (.*)$", makefile, re.M).group(1).split())  # type: ignore[union-attr]
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True, check=True
    )
    listed = {line.split()[0] for line in re.sub(r"\x1b\[[0-9;]*m", "", shown.stdout).splitlines() if line.strip()}
    assert listed == phony


def test_train_serve_and_call_as_the_readme_shows(tmp_path: Path) -> None:
    home = tmp_path / "home"
    trained = run_cli("train", "--config", "configs/sample.yaml", home=home)
    assert trained.returncode == 0, trained.stderr
    assert "registered sample version 1 (alias: champion)" in trained.stdout

    path, body, promised = readme_curl()
    with serve("--model", "models:/sample@champion", home=home) as server:
        response = httpx.post(server.url + path, json=body)
        assert response.status_code == 200
        assert response.json() == promised == {"prediction": "positive"}
        assert response.content == b'{"prediction":"positive"}'
        assert response.headers["X-Model-Version"] == "1"

        batch = httpx.post(server.url + "/predict", json=[body, {"feature_1": 1.0, "feature_2": 6.0}])
        assert batch.json() == {"predictions": ["positive", "negative"]}

        wrong = httpx.post(server.url + "/predict", json={"feature_1": "abc", "feature_2": 2.1})
        assert wrong.status_code == 422
        assert wrong.json()["details"] == [{"field": "feature_1", "reason": "expected a number, got 'abc'"}]
