"""``fasttrack report drift`` on a registered model: every version that served, the drifted feature named for the
version whose traffic drifted, a data file compared with a version's profile."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fasttrack.errors import ConfigError
from inference_log import START, invoke, log_served, mixed_home, write_feedback
from support import mixed_frame


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mixed_home(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def log(home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Version 1: 2,000 rows like its training data; version 2: 2,000 rows whose amount is shifted up by 3 standard
    deviations; labels for half of each."""
    root = tmp_path_factory.mktemp("report-log")
    plain = mixed_frame(2000, seed=31)
    shifted = mixed_frame(2000, seed=32)
    shifted["amount"] = shifted["amount"] + 45
    for version, frame, start in (("1", plain, START), ("2", shifted, START + dt.timedelta(days=1))):
        ids, _ = log_served(root, home, version, frame, start=start, every_seconds=20)
        half = np.arange(0, len(ids), 2)
        times = [start + dt.timedelta(seconds=20 * int(i) + 30) for i in half]
        write_feedback(root, "mixed", version, [ids[i] for i in half], frame["label"].iloc[half].tolist(), times=times)
    return root


def drifted(html: str, version: str) -> list[str]:
    section = html.split(f'<section id="version-{version}">', 1)[1].split("</section>", 1)[0]
    found = re.search(r'<ul class="drifted">(.*?)</ul>', section, re.S)
    assert found is not None
    return re.findall(r"<li>(\w+) ", found.group(1))


def test_every_version_with_the_drifted_feature_named(home: Path, log: Path, tmp_path: Path) -> None:
    output = tmp_path / "drift.html"
    result = invoke(home, "report", "drift", "mixed", "--log", str(log), "--out", str(output))
    assert result.exit_code == 0, result.output
    assert f"report written to {output}" in result.stdout
    assert result.stdout.count("amount (PSI") == 1 and "none" in result.stdout  # version 2 drifted, version 1 not
    html = output.read_text(encoding="utf-8")
    assert drifted(html, "1") == [] and drifted(html, "2") == ["amount"]
    assert not re.search(r"https?://", html)
    assert "Live performance" in html and "Drift over time" in html


def test_one_version(home: Path, log: Path, tmp_path: Path) -> None:
    output = tmp_path / "v2.html"
    result = invoke(home, "report", "drift", "mixed", "--log", str(log), "--version", "2", "--out", str(output))
    assert result.exit_code == 0, result.output
    html = output.read_text(encoding="utf-8")
    assert 'id="version-2"' in html and 'id="version-1"' not in html


def test_a_data_file_against_the_champion(home: Path, tmp_path: Path) -> None:
    data = mixed_frame(1000, seed=33)
    data["colour"] = "purple"
    source = tmp_path / "new.csv"
    data.drop(columns="label").to_csv(source, index=False)
    output = tmp_path / "data.html"
    result = invoke(home, "report", "drift", "mixed", "--data", str(source), "--out", str(output))
    assert result.exit_code == 0, result.output
    html = output.read_text(encoding="utf-8")
    assert drifted(html, "1") == ["colour"]
    assert "Live performance" not in html and "Drift over time" not in html


def test_log_and_data_together_are_refused(home: Path, log: Path, tmp_path: Path) -> None:
    refused: Any = invoke(home, "report", "drift", "mixed", "--log", str(log), "--data", "x.csv")
    assert isinstance(refused.exception, ConfigError) and "not both" in str(refused.exception)
