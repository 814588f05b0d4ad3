"""deploy/cron/: the DAGs' steps without Airflow, run as cron would run them, on a real embedded store.

A first run registers and promotes version 1 and scores with it; a run on noisier data, whose challenger is not
clearly better, keeps the champion and exits 0;
a run on data missing a feature stops at the check with the reason, before anything is trained.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from churn_data import churn
from support import REPO, clean_env, serving_settings

pytestmark = pytest.mark.integration

CRON = REPO / "deploy" / "cron"


def run(script: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CRON / script)],
        env=clean_env(home, FASTTRACK_PYTHON=sys.executable, FASTTRACK_MODEL_NAME="churn", **env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_retrain_then_keep_then_refuse_broken_data(tmp_path: Path) -> None:
    import fasttrack.api

    home = tmp_path / "home"
    churn(600, seed=1).to_csv(tmp_path / "good.csv", index=False)
    churn(1500, seed=2, noise=0.2).to_csv(tmp_path / "noisier.csv", index=False)
    churn(300, seed=3).drop(columns=["plan"]).to_csv(tmp_path / "broken.csv", index=False)
    churn(100, seed=4, labelled=False).to_csv(tmp_path / "to-score.csv", index=False)
    config = tmp_path / "churn.yaml"
    config.write_text("target: churned\nmodel: linear\ncv_folds: 0\nseed: 7\n", encoding="utf-8")
    scores = tmp_path / "scores"
    settings = serving_settings(home)
    common = {
        "FASTTRACK_RETRAIN_CONFIG": str(config),
        "FASTTRACK_SCORE_INPUT": str(tmp_path / "to-score.csv"),
        "FASTTRACK_SCORE_OUTPUT": str(scores),
    }

    first = run("retrain.sh", home, FASTTRACK_RETRAIN_DATA=str(tmp_path / "good.csv"), **common)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "nothing to check against" in first.stdout and "registered churn version 1" in first.stdout
    assert fasttrack.api.describe_version("churn", "champion", settings=settings).version == "1"
    output = Path(first.stdout.strip().splitlines()[-1])  # score.sh ran after the promotion
    assert output.parent.parent == scores and output.name == "churn.parquet"
    assert len(pd.read_parquet(output)) == 100

    kept = run(
        "retrain.sh",
        home,
        FASTTRACK_RETRAIN_DATA=str(tmp_path / "noisier.csv"),
        FASTTRACK_PROMOTION_MARGIN="0.02",
        **common,
    )
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "registered churn version 2" in kept.stdout
    assert fasttrack.api.describe_version("churn", "champion", settings=settings).version == "1"

    broken = run("retrain.sh", home, FASTTRACK_RETRAIN_DATA=str(tmp_path / "broken.csv"), **common)
    assert broken.returncode == 1
    assert "breaking: plan: missing: the model was trained on this categorical feature" in broken.stdout
    assert "registered" not in broken.stdout
    assert [v.version for v in fasttrack.api.list_versions("churn", settings=settings)] == ["2", "1"]


def test_score_needs_its_input_and_output(tmp_path: Path) -> None:
    result = run("score.sh", tmp_path / "home")
    assert result.returncode != 0
    assert "FASTTRACK_SCORE_INPUT" in result.stderr
