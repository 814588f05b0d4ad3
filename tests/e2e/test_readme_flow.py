"""The README's flow, end to end: train the bundled sample, serve it, and call it as the README shows."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from support import REPO, clean_env, run_cli, serve

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


def readme_python() -> str:
    """The README's "From Python" example."""
    match = re.search(r"### \d+\. From Python\n.*?```python\n(.*?)```", README, re.S)
    assert match, "the README has no From Python example"
    return match.group(1)


def test_the_from_python_example_runs_as_written(tmp_path: Path) -> None:
    # Run where the README's relative paths hold, without writing into the repository.
    for folder in ("configs", "data/sample"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    ran = subprocess.run(
        [sys.executable, "-c", readme_python()],
        cwd=tmp_path,
        env=clean_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    version, run_id, roc_auc = lines[0].split()
    assert version == "1" and len(run_id) == 32 and 0.5 < float(roc_auc) <= 1
    assert lines[1].split()[0] in ("promoted", "rejected")
    assert lines[2] == "['positive']"  # what the README's comment promises
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert len(scored) == len(pd.read_csv(tmp_path / "data/sample/classification.csv"))
    assert {"prediction", "probability_negative", "probability_positive"} <= set(scored.columns)
