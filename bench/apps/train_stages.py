"""Where ``fasttrack train``'s time goes: the command run in this process with a wall-clock timer on each stage.

Used by bench/training.py. The stage functions are wrapped (module attributes replaced before the command runs,
nothing in the package changes) and ``builtins.__import__`` is timed, so that every stage is reported without
the imports it triggered; all imports together are one line of their own. Imports made through
``importlib.import_module`` (some of MLflow's lazy ones) are not seen by the hook and stay in their stage.
Times are wall-clock, so no profiler overhead: the sum matches the command's own run time.

Run: ``FASTTRACK_HOME=$(mktemp -d) .venv/bin/python bench/apps/train_stages.py OUT.json train --config
configs/adult.yaml --cv-folds 0``: the command's output as usual, the stage times as JSON in OUT.json.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import builtins  # noqa: E402 - timed from the first line on purpose
import functools  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

_MAIN = threading.main_thread()
_depth = [0]
imports = [0.0]
_real_import = builtins.__import__


def _timed_import(*args: Any, **kwargs: Any) -> Any:
    if threading.current_thread() is not _MAIN:
        return _real_import(*args, **kwargs)
    _depth[0] += 1
    started = time.perf_counter()
    try:
        return _real_import(*args, **kwargs)
    finally:
        _depth[0] -= 1
        if _depth[0] == 0:
            imports[0] += time.perf_counter() - started


builtins.__import__ = _timed_import

#: (stage, module, attribute, parent stage): parents' times are reported without their children's.
STAGES = [
    ("check tracking store", "fasttrack.registry.store", "check_tracking", None),
    ("ingest: read + clean", "fasttrack.api", "_read", None),
    ("schema inference", "fasttrack.data.schema", "infer_schema", None),
    ("train(): split, baseline, test metrics", "fasttrack.training.train", "train", None),
    ("cross-validation", "fasttrack.training.train", "_cross_validate", "train(): split, baseline, test metrics"),
    ("plots", "fasttrack.training.plots", "save_plots", None),
    ("ONNX export + agreement check", "fasttrack.training.publish", "export_onnx", None),
    ("log_training: run, params, metrics, tags, artifacts", "fasttrack.registry.runs", "log_training", None),
    # log_training's steps, as the names it calls them by in fasttrack.registry.runs.
    (
        "MLflow store open (new DB: create + migrate)",
        "fasttrack.registry.runs",
        "client",
        "log_training: run, params, metrics, tags, artifacts",
    ),
    (
        "mlflow.sklearn.log_model",
        "mlflow.sklearn",
        "log_model",
        "log_training: run, params, metrics, tags, artifacts",
    ),
    (
        "load-back check of the stored model",
        "fasttrack.registry.runs",
        "_check_stored",
        "log_training: run, params, metrics, tags, artifacts",
    ),
    (
        "registration",
        "fasttrack.registry.runs",
        "register_version",
        "log_training: run, params, metrics, tags, artifacts",
    ),
]
FIT = "fit (Pipeline.fit on the training part)"
spent: dict[str, float] = {}
imports_in: dict[str, float] = {}


def _timed(stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started, imported = time.perf_counter(), imports[0]
        try:
            result = function(*args, **kwargs)
        finally:
            spent[stage] = spent.get(stage, 0.0) + time.perf_counter() - started
            imports_in[stage] = imports_in.get(stage, 0.0) + imports[0] - imported
        if stage.startswith("train()"):
            spent[FIT] = spent.get(FIT, 0.0) + float(result.fit_seconds)
        return result

    return wrapper


def main() -> None:
    from fasttrack import process

    out, argv = sys.argv[1], sys.argv[2:]
    process.skip_teardown_on_exit()  # before the stages' modules register their atexit handlers, as the CLI does
    for stage, module, attribute, _ in STAGES:
        target = importlib.import_module(module)
        if hasattr(target, attribute):
            setattr(target, attribute, _timed(stage, getattr(target, attribute)))
    # The Typer app itself, not fasttrack.cli.main: main() ends the process before the report below could be
    # written; the same exit (fasttrack.process.exit_without_teardown) follows the report instead.
    from fasttrack.cli.entry import app

    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    finally:
        total = time.perf_counter() - START
        parents = {stage: parent for stage, _, _, parent in STAGES if parent}
        parents[FIT] = "train(): split, baseline, test metrics"
        order = [stage for stage, _, _, _ in STAGES]
        order.insert(order.index(parents[FIT]) + 1, FIT)
        own = {stage: spent[stage] - imports_in.get(stage, 0.0) for stage in order if stage in spent}
        for stage, parent in parents.items():
            if stage in own and parent in own:
                own[parent] -= own[stage]
        report: dict[str, Any] = {"total": total, "imports": imports[0], "stages": own, "parents": parents}
        report["exit_code"] = code
        report["other"] = total - imports[0] - sum(own.values())
        Path(out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    process.exit_without_teardown(code if isinstance(code, int) else 1)


if __name__ == "__main__":
    main()
