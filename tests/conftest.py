"""Shared fixtures: where the real public data sets are, and small generated data."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def pytest_configure(config: pytest.Config) -> None:
    """Children see Ctrl-C as a terminal delivers it: a run started in the background (``make test &`` in a
    script) inherits SIGINT ignored and hands that to every child, where Python then installs no KeyboardInterrupt
    handler, and the tests that interrupt a real command would wait for it in vain. A handled signal is reset for
    the child at exec."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # An xdist worker starts with COLUMNS=80 and LINES=24 in its environment, where a serial run with its output
    # in a file or a pipe (CI) has neither. The CLI's Rich consoles fix their size at import when these are set,
    # and every child process would inherit them: the CLI tests' own COLUMNS (per command) would be ignored.
    if hasattr(config, "workerinput"):
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)
    # How `make test` shares modules out among xdist workers; the hook it defines exists only with xdist.
    if config.pluginmanager.hasplugin("xdist"):
        import xdist_groups

        config.pluginmanager.register(xdist_groups, "fasttrack-xdist-groups")


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """The folder of real public data sets (``../shared/datasets``), skipping the test where it is absent."""
    if not DATASETS.is_dir():
        pytest.skip(f"real data sets not found at {DATASETS} (CI always has them; this checkout has no ../shared)")
    return DATASETS


@pytest.fixture
def training() -> pd.DataFrame:
    """A small cleaned training frame with every feature kind, missing values and a text target."""
    rng = np.random.default_rng(0)
    n = 200
    age = rng.integers(1, 80, n).astype("float64")
    age[:10] = np.nan
    return pd.DataFrame(
        {
            "age": age,
            "rooms": rng.integers(1, 6, n),
            "income": rng.normal(50.0, 10.0, n),
            "colour": pd.Series(["red"] * 120 + ["blue"] * 60 + ["green"] * 16 + ["pink"] * 4, dtype="str"),
            "member": np.arange(n) % 3 == 0,
            "y": pd.Series(["no", "yes"] * (n // 2), dtype="str"),
        }
    )
