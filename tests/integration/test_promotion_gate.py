"""The promotion gate end to end: versions trained by the ``fasttrack`` command on a real embedded store, compared on
rows neither trained on, with an interval, and refused when too few such rows are left."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from support import one_line_error, run_cli, serving_settings

pytestmark = pytest.mark.integration


def labelled(rows: int, seed: int) -> pd.DataFrame:
    """Two numbers and a colour; the label follows them with noise."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, rows).round(4), rng.normal(0, 1, rows).round(4)
    colour = rng.choice(["red", "green", "blue"], rows)
    signal = a - 0.5 * b + np.where(colour == "red", 0.5, 0.0) + rng.normal(0, 0.8, rows)
    return pd.DataFrame({"a": a, "b": b, "colour": colour, "label": np.where(signal > 0, "yes", "no")})


def compared(stdout: str) -> tuple[int, int]:
    """The rows compared and left out, as ``models promote`` prints them."""
    found = re.search(r"(\d+) rows compared, (\d+) left out as training rows", stdout)
    assert found, stdout
    return int(found.group(1)), int(found.group(2))


def test_two_versions_compared_on_rows_neither_trained_on(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first, grown = tmp_path / "toy.csv", tmp_path / "toy-grown.csv"
    old = labelled(3000, seed=0)
    old.to_csv(first, index=False)
    # The next month's file: the same rows, in another order, and 1,500 new ones.
    pd.concat([labelled(1500, seed=1), old]).sample(frac=1.0, random_state=2).to_csv(grown, index=False)

    linear = ["--target", "label", "--model", "linear", "--cv-folds", "0"]
    trained = run_cli("train", "--data", str(first), *linear, home=home)
    assert trained.returncode == 0, trained.stderr
    forest = ["--target", "label", "--name", "toy", "--model", "random_forest", "--param", "n_estimators=30"]
    challenger = run_cli("train", "--data", str(grown), *forest, "--cv-folds", "0", home=home)
    assert challenger.returncode == 0, challenger.stderr
    assert "registered toy version 2" in challenger.stdout

    promoted = run_cli("models", "promote", "toy", "2", home=home)
    assert promoted.returncode in (0, 99), promoted.stderr  # promoted, or kept (99): either is a decision
    assert "95% interval" in promoted.stdout and "1000 paired bootstrap resamples" in promoted.stdout
    rows, excluded = compared(promoted.stdout)
    # Adding rows moved none: every row version 2 held out that version 1 had seen, version 1 held out too.
    assert excluded == 0 and 750 < rows < 1050  # about 20 % of 4,500 rows
    shown = run_cli("models", "show", "toy", "2", home=home)
    assert shown.returncode == 0, shown.stderr
    assert f"rows: {rows}" in shown.stdout and "excluded: 0" in shown.stdout and "interval_low:" in shown.stdout

    # A split with another salt holds out rows version 1 trained on: too few fresh rows are left to decide.
    salted = run_cli("train", "--data", str(first), *linear, "--split-salt", "pepper", "--param", "C=0.1", home=home)
    assert salted.returncode == 0, salted.stderr
    refused = run_cli("models", "promote", "toy", "3", home=home)
    one_line_error(refused, "not enough rows to decide", "FASTTRACK_PROMOTION_MIN_ROWS", "version 1 trained on")
    from fasttrack.api import describe_version

    tags = describe_version("toy", "3", settings=serving_settings(home)).tags
    assert not [key for key in tags if key.startswith("fasttrack.promotion.")]  # refused: nothing recorded
    lowered = run_cli("models", "promote", "toy", "3", "--margin", "1", home=home, FASTTRACK_PROMOTION_MIN_ROWS="20")
    assert lowered.returncode != 0  # nothing beats the champion by a whole unit of ROC AUC
    rows, excluded = compared(lowered.stdout)
    assert excluded > rows > 20

    # Evaluating on the file the champion trained on warns, with the count.
    evaluated = run_cli("evaluate", "--model", "models:/toy@champion", "--data", str(first), home=home)
    assert evaluated.returncode == 0, evaluated.stderr
    assert re.search(r"warning: \d+ of the 3000 rows of .* are rows the model was trained on", evaluated.stderr)


@pytest.mark.datasets
def test_bank_marketing_the_champion_is_scored_on_rows_it_never_saw(datasets_dir: Path, tmp_path: Path) -> None:
    """The issue's finding: on bank_additional.csv a challenger differing only by its seed (7 against 42) was refused
    by 0.0094, because the champion was scored on its own training rows (0.9587, against 0.9520 on its held-out
    rows). Now both are scored on the rows both held out, and the decision is the interval's. At the margin of the
    cross-validation spread the issue quotes (0.0017), the seed is not an improvement."""
    home = tmp_path / "home"
    bank = str(datasets_dir / "bank_additional.csv")
    common = ["--data", bank, "--target", "y", "--cv-folds", "0", "--name", "bank"]
    for seed in ("42", "7"):
        trained = run_cli("train", *common, "--seed", seed, home=home)
        assert trained.returncode == 0, trained.stderr
    promoted = run_cli("models", "promote", "bank", "2", "--margin", "0.0017", home=home)
    assert promoted.returncode != 0, promoted.stdout  # the champion stays
    rows, excluded = compared(promoted.stdout)
    assert excluded == 0 and 7000 < rows < 9500  # about 20 % of 41,176 rows, trained on by neither version
    interval = re.search(
        r"improvement ([-+]\d\.\d{4}), 95% interval ([-+]\d\.\d{4}) to ([-+]\d\.\d{4})", promoted.stdout
    )
    assert interval, promoted.stdout
    improvement, low, high = (float(interval.group(i)) for i in (1, 2, 3))
    assert low <= improvement <= high and low < 0.0017 and abs(improvement) < 0.0094 / 3

    # The champion is scored on its own held-out rows, so its score is the test metric it was registered with.
    from fasttrack.api import describe_version

    champion = describe_version("bank", "1", settings=serving_settings(home))
    recorded = {k.removeprefix("fasttrack.promotion."): v for k, v in champion.tags.items()}
    assert float(recorded["champion_score"]) == pytest.approx(champion.metrics["test_roc_auc"], abs=1e-3)
