"""What the CLI's teardown shortcut saves: each command with and without it, in processes of their own.

``fasttrack.cli.main`` ends a command that succeeded, or failed with a ``FastTrackError``, without the
interpreter's teardown (:func:`fasttrack.process.exit_without_teardown`). This times, from process start to exit,
the same command both ways, in turn (with, without, with, ...), so that a change in the machine's load moves both:

* ``train``: ``fasttrack train --config configs/sample.yaml --cv-folds 0`` into a home that already holds a run
  (made once, untimed, first);
* ``predict``: ``fasttrack predict`` of ``--rows`` rows like the bundled sample with the model that run
  registered, into a CSV;
* ``predict-error``: the same command on a file without one of the model's features: it exits 1 with one line
  once the input is open, its CSV reader reading ahead.

"Without" runs the same ``main()`` with :func:`fasttrack.process.skip_teardown_on_exit` made a no-op, so
``exit_without_teardown`` is a plain ``sys.exit`` and the interpreter tears itself down as after Ctrl-C. The table
gives each command's wall and CPU seconds (user + system: the teardown is CPU work, and CPU time moves less than
wall time on a busy machine) with and without, and what the shortcut saved, run by run: median (min-max). Every
run's exit status is counted: a status other than the command's own (0, or 1 for ``predict-error``; -6 is
SIGABRT) would be a crash at exit.

Run: ``.venv/bin/python bench/teardown.py [--runs 7] [--rows 10000] [--commands train,predict,predict-error]
[--json FILE]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
WITH = ["-m", "fasttrack"]
WITHOUT = [
    "-c",
    "import sys\n"
    "from fasttrack import process\n"
    "process.skip_teardown_on_exit = lambda: None\n"
    "from fasttrack.cli import main\n"
    "sys.argv[0] = 'fasttrack'\n"
    "main()\n",
]


def sample_rows(path: Path, rows: int, *, drop_feature: bool = False) -> None:
    """``rows`` rows shaped like data/sample/classification.csv (without ``feature_1`` when ``drop_feature``)."""
    rng = np.random.default_rng(7)
    f1, f2 = rng.normal(4.0, 2.0, rows).round(2), rng.normal(3.0, 1.5, rows).round(2)
    with path.open("w", encoding="utf-8") as out:
        out.write("feature_2\n" if drop_feature else "feature_1,feature_2\n")
        for a, b in zip(f1, f2, strict=True):
            out.write(f"{b}\n" if drop_feature else f"{a},{b}\n")


def timed(prefix: list[str], args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """One run: its wall seconds, its CPU seconds (user + system, which a busy machine moves less) and status."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [str(PYTHON), *prefix, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen so it does not wait again
    return wall, usage.ru_utime + usage.ru_stime, child.returncode


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command each way")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the file predict scores")
    parser.add_argument("--commands", default="train,predict,predict-error")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="fasttrack-teardown-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTTRACK_", "MLFLOW_"))}
    env.update({"FASTTRACK_HOME": str(scratch / "home"), "NO_COLOR": "1"})
    try:
        train = ["train", "--config", "configs/sample.yaml", "--cv-folds", "0"]
        subprocess.run([str(PYTHON), *WITH, *train], cwd=ROOT, env=env, capture_output=True, check=True)
        good, bad = scratch / "in.csv", scratch / "bad.csv"
        sample_rows(good, options.rows)
        sample_rows(bad, options.rows, drop_feature=True)
        predict = ["predict", "--model", "models:/sample/1", "--out", str(scratch / "out.csv")]
        commands = {
            "train": (train, 0),
            "predict": ([*predict, "--data", str(good)], 0),
            "predict-error": ([*predict, "--data", str(bad)], 1),
        }
        load = os.getloadavg()[0]
        report: dict[str, Any] = {"runs": options.runs, "rows": options.rows, "load_before": load}
        print(f"{options.runs} runs each way, 1-minute load average {load:.2f}; median (min-max) seconds")
        print(f"{'command':<14}{'figure':<6}{'with':>22}{'without':>22}{'saved':>22}  exit statuses")
        for name in options.commands.split(","):
            args, expected = commands[name]
            for prefix in (WITH, WITHOUT):  # one untimed run each: files cached, the store migrated
                timed(prefix, args, env)
            runs: dict[str, list[tuple[float, float, int]]] = {"with": [], "without": []}
            for _ in range(options.runs):
                for way, prefix in (("with", WITH), ("without", WITHOUT)):
                    runs[way].append(timed(prefix, args, env))
            statuses = {way: dict(collections.Counter(code for _, _, code in done)) for way, done in runs.items()}
            figures: dict[str, Any] = {"expected_status": expected, "statuses": statuses}
            for index, figure in ((0, "wall"), (1, "cpu")):
                with_, without = ([run[index] for run in runs[way]] for way in ("with", "without"))
                saved = [b - a for a, b in zip(with_, without, strict=True)]  # run by run: the load moves both
                figures[figure] = {"with": with_, "without": without, "saved": saved}
                shown = f"with {statuses['with']}; without {statuses['without']}" if index == 0 else ""
                cells = f"{spread(with_):>22}{spread(without):>22}{spread(saved):>22}"
                print(f"{name:<14}{figure:<6}{cells}  {shown}".rstrip())
            report[name] = figures
        report["load_after"] = os.getloadavg()[0]
        print(f"1-minute load average after: {report['load_after']:.2f}")
        if options.json:
            options.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
