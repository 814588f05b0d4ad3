"""Training overhead: ``fasttrack train`` against a bare scikit-learn fit of the same estimator on the same data.

Each round runs, every command in a process of its own and in an order that reverses every other round:

* ``fasttrack train --config CONFIG --cv-folds 0`` and ``fasttrack train --config CONFIG`` (the config's
  cross-validation), each into a fresh temporary ``FASTTRACK_HOME``, so each creates its MLflow store;
* ``fasttrack train --config CONFIG --cv-folds 0`` and ``fasttrack train --config CONFIG`` into a home that
  already holds a run (made once, untimed, before the first round): what every training after the first costs;
* bench/apps/bare_fit.py, plain pandas + scikit-learn, with the same cleaning, split, preprocessing, estimator
  and hyperparameters: once a single fit, once the config's cross-validation followed by the fit;
* the same single fit followed by only ``import mlflow`` and of its SQL tracking store (bare_fit.py
  ``--import-mlflow``): the least that keeping runs in MLflow's embedded store costs, before anything is logged;
* bench/apps/bare_mlflow_fit.py: the same single fit, then the plain MLflow calls that keep it (a run with
  params and metrics, ``mlflow.sklearn.log_model``, ``mlflow.register_model``) into a fresh SQLite store: the
  floor of any training that records its model in MLflow;
* with ``--baseline-src DIR``, both fresh-home ``fasttrack train`` commands again on another source tree
  (``PYTHONPATH=DIR``), to compare a change with what it replaces under the same load;
* then, with ``--scale N`` (default 10), ``--scale-rounds`` rounds of ``fasttrack train`` with and without
  cross-validation and the two bare fits on the config's data grown N times (:func:`scaled_copy`, written to a
  temporary folder): where the fit dominates, the issue's ``train / bare fit`` figure.

``--commands`` and ``--scale-commands`` keep only some of the commands (keys such as ``train0``, ``bare``,
``bare_mlflow``), for machines where a full round takes too long. Each command's peak resident memory is its
``ru_maxrss`` from ``os.wait4`` (its own high-water mark, the children it waited for included).

The wall time of each command is measured from process start to exit, with its CPU time (user + system, which
other processes on the machine move less than the wall time). The table gives the median and min-max over
``--rounds``, with the fit's own time (fasttrack's ``fit_seconds`` metric, the bare script's report), and
the ratios the target is stated in, per round: train(cv=0) / bare fit, train(default) / bare CV + fit (each
also into the existing home, and against the bare fit with plain MLflow). That both
fit the same model is shown by their test ROC AUC. Then ``--stage-runs`` runs of bench/apps/train_stages.py
break ``fasttrack train --cv-folds 0`` down by stage (imports, ingest, fit, plots, ONNX, MLflow, registration),
in a fresh home and in the existing one, and on the baseline's source (fresh home) when there is one. The
machine's load average is printed before and after: on a shared machine, other processes move every figure
(the fit most, as its OpenMP threads wait for each other); ``--omp-threads 1`` takes that effect out.

Run: ``.venv/bin/python bench/training.py [--rounds 3] [--config configs/adult.yaml] [--stage-runs 1]
[--omp-threads N] [--baseline-src DIR] [--scale 10] [--scale-rounds 2] [--commands K,..] [--scale-commands K,..]
[--json FILE]``.
The config must use ``hist_gradient_boosting`` for a classification target without ``params`` (what the bare
script replicates). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
APPS = ROOT / "bench" / "apps"
console = Console(width=160)


@dataclass
class Variant:
    key: str
    name: str
    kind: str  # "fasttrack", "bare" or "bare_mlflow" (bare, with a fresh --home for its MLflow store)
    args: list[str]
    home: str = "fresh"  # fasttrack only: "fresh" or "existing"
    env: dict[str, str] = field(default_factory=dict)
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    fits: list[float] = field(default_factory=list)
    peaks: list[float] = field(default_factory=list)  # the process's peak resident memory, MB
    auc: float | None = None


def load_config(path: str) -> dict[str, object]:
    from fasttrack.config import TrainConfig

    config = TrainConfig.load(Path(path))
    if config.model != "hist_gradient_boosting" or config.params or config.data is None:
        sys.exit(f"{path}: the bare script replicates hist_gradient_boosting on a data file without params only")
    return {
        "data": config.data,
        "target": config.target,
        "test_size": config.test_size,
        "seed": config.seed,
        "cv_folds": config.cv_folds,
        "max_categories": config.max_categories,
        "min_category_count": config.min_category_count,
    }


def variants(
    config_path: str, config: dict[str, object], baseline_src: str | None, *, only: list[str] | None = None
) -> list[Variant]:
    """The commands of one suite; ``only`` (keys) keeps those (the baseline's follow theirs)."""
    train = [str(BIN / "fasttrack"), "train", "--config", config_path]
    bare = [str(BIN / "python"), str(APPS / "bare_fit.py"), "--data", str(config["data"])]
    bare += ["--target", str(config["target"]), "--test-size", str(config["test_size"]), "--seed", str(config["seed"])]
    bare += ["--max-categories", str(config["max_categories"])]
    bare += ["--min-category-count", str(config["min_category_count"])]
    folds = int(str(config["cv_folds"]))
    found = [
        Variant("train0", "fasttrack train --cv-folds 0", "fasttrack", [*train, "--cv-folds", "0"]),
        Variant("train", f"fasttrack train (config: {folds} folds)", "fasttrack", train),
        Variant(
            "train0_existing",
            "fasttrack train --cv-folds 0, existing home",
            "fasttrack",
            [*train, "--cv-folds", "0"],
            "existing",
        ),
        Variant(
            "train_existing", f"fasttrack train (config: {folds} folds), existing home", "fasttrack", train, "existing"
        ),
        Variant("bare", "bare sklearn: fit", "bare", [*bare, "--cv-folds", "0"]),
        Variant("bare_cv", f"bare sklearn: {folds}-fold CV + fit", "bare", [*bare, "--cv-folds", str(folds)]),
        Variant(
            "bare_import",
            "bare sklearn fit + import of MLflow's SQL store",
            "bare",
            [*bare, "--cv-folds", "0", "--import-mlflow"],
        ),
        Variant(
            "bare_mlflow",
            "bare sklearn fit + plain MLflow log_model, register",
            "bare_mlflow",
            [str(BIN / "python"), str(APPS / "bare_mlflow_fit.py"), *bare[2:], "--cv-folds", "0"],
        ),
    ]
    if only is not None:
        found = [v for v in found if v.key in only]
    if baseline_src:
        # The same commands on another source tree (e.g. `git archive HEAD src | tar -x -C /tmp/before`),
        # interleaved with the others so that both see the same load.
        env = {"PYTHONPATH": str(Path(baseline_src).resolve())}
        baselines = [
            Variant("train0_base", "baseline: fasttrack train --cv-folds 0", "fasttrack", [*train, "--cv-folds", "0"]),
            Variant("train_base", f"baseline: fasttrack train (config: {folds} folds)", "fasttrack", train),
        ]
        for variant in baselines:
            variant.env = env
        found += [v for v in baselines if only is None or v.key.removesuffix("_base") in only]
    return found


def run_metric(home: Path, key: str) -> float | None:
    """The latest value of a run metric in the embedded store of ``home``."""
    with sqlite3.connect(home / "mlflow.db") as db:
        row = db.execute(
            "SELECT m.value FROM metrics m JOIN runs r ON m.run_uuid = r.run_uuid WHERE m.key = ? "
            "ORDER BY r.start_time DESC LIMIT 1",
            (key,),
        ).fetchone()
    return float(row[0]) if row else None


def run(variant: Variant, existing_home: Path, common_env: dict[str, str]) -> None:
    env = {**os.environ, **common_env, **variant.env}
    home = None
    args = variant.args
    if variant.kind == "fasttrack":
        home = existing_home if variant.home == "existing" else Path(tempfile.mkdtemp(prefix="fasttrack-bench-home-"))
        env["FASTTRACK_HOME"] = str(home)
    scratch = Path(tempfile.mkdtemp(prefix="fasttrack-bench-bare-")) if variant.kind == "bare_mlflow" else None
    if scratch is not None:
        args = [*args, "--home", str(scratch)]
    try:
        wall, cpu, peak, code, stdout, stderr = timed(args, env)
        if code != 0:
            tail = " | ".join((stderr or stdout).strip().splitlines()[-3:])
            sys.exit(f"{variant.name} exited with {code}: {tail}")
        variant.walls.append(wall)
        variant.cpus.append(cpu)
        variant.peaks.append(peak)
        if home is not None:
            variant.fits.append(run_metric(home, "fit_seconds") or float("nan"))
            variant.auc = run_metric(home, "test_roc_auc")
        else:
            report = json.loads(stdout.strip().splitlines()[-1])
            variant.fits.append(float(report["seconds"]["fit"]))
            variant.auc = float(report["metrics"]["roc_auc"])
    finally:
        if home is not None and home != existing_home:
            shutil.rmtree(home, ignore_errors=True)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, float, int, str, str]:
    """Run ``args`` to its end: wall seconds, CPU seconds (user + system), peak resident memory in MB, exit code,
    stdout and stderr.

    The child is reaped with ``os.wait4``, whose resource usage is that child's alone (with the processes it
    waited for), so its ``ru_maxrss`` is the command's own high-water mark, not the largest of every child so
    far as ``getrusage(RUSAGE_CHILDREN)`` would give. Output goes to temporary files: no pipe to drain meanwhile.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    # Linux reports ru_maxrss in KiB.
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, child.returncode, stdout, stderr


def spread(values: list[float], fmt: str = ".2f") -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def stages(config_path: str, home: Path, common_env: dict[str, str]) -> dict[str, Any]:
    """One run of bench/apps/train_stages.py (``--cv-folds 0``) into ``home``: its stage times."""
    out = Path(tempfile.mkstemp(prefix="fasttrack-stages-", suffix=".json")[1])
    cmd = [str(BIN / "python"), str(APPS / "train_stages.py"), str(out), "train", "--config", config_path]
    env = {**os.environ, **common_env, "FASTTRACK_HOME": str(home)}
    try:
        started = time.perf_counter()
        subprocess.run([*cmd, "--cv-folds", "0"], cwd=ROOT, env=env, capture_output=True, check=True)
        report: dict[str, Any] = json.loads(out.read_text())
        report["process"] = time.perf_counter() - started
        return report
    finally:
        out.unlink(missing_ok=True)


def stage_table(columns: dict[str, list[dict[str, Any]]]) -> Table:
    runs = max(len(reports) for reports in columns.values())
    table = Table(title=f"fasttrack train --cv-folds 0 by stage, seconds (median of {runs} run(s) each)")
    for col in ("stage", *columns):
        table.add_column(col, justify="left" if col == "stage" else "right")
    every = [report for reports in columns.values() for report in reports]

    def cell(reports: list[dict[str, Any]], pick: Callable[[dict[str, Any]], float | None]) -> str:
        values = [value for value in map(pick, reports) if value is not None]
        return f"{statistics.median(values):.2f}" if values else "-"

    def row(label: str, pick: Callable[[dict[str, Any]], float | None]) -> None:
        table.add_row(label, *(cell(reports, pick) for reports in columns.values()))

    # Python itself starts in about 20 ms; the rest is the interpreter's shutdown (freeing every module).
    row("interpreter start-up and shutdown (process wall - in-process)", lambda r: r["process"] - r["total"])
    row("imports (every module, wherever imported)", lambda r: r["imports"])
    names: list[str] = []
    for report in every:
        names += [name for name in report["stages"] if name not in names]
    parents = {k: v for report in every for k, v in report["parents"].items()}
    for name in names:
        row(f"  {name}" if name in parents else name, lambda r, name=name: r["stages"].get(name))
    row("CLI and everything else", lambda r: r["other"])
    row("process wall time", lambda r: r["process"])
    return table


def scaled_copy(source: Path, factor: int, folder: Path, seed: int = 0) -> Path:
    """``source`` (a CSV) repeated ``factor`` times into ``folder``, every copy after the first slightly changed.

    FastTrack's ingest drops exact duplicate rows, so each later copy moves one column a little: the numeric
    column with the most distinct values (adult's ``fnlwgt``, a census sampling weight), by a nonzero step of at
    most 2 % of its value, rounded like the column. Every other value is kept, so the copies stay plausible rows
    (no negative gains, no years of schooling at odds with the degree) with the class balance and the relations
    between columns of the original: a model fits about as well, on ``factor`` times the rows.
    """
    import numpy as np
    import pandas as pd

    frame = pd.read_csv(source, skipinitialspace=True)
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
    if not numeric:
        sys.exit(f"{source}: no numeric column to tell the copies apart")
    column = max(numeric, key=lambda c: frame[c].nunique())
    values = frame[column]
    rng = np.random.default_rng(seed)
    copies = [frame]
    for _ in range(1, factor):
        step = rng.uniform(-0.02, 0.02, len(frame)) * values.abs().clip(lower=1).to_numpy()
        if pd.api.types.is_integer_dtype(values):
            step = np.where(step >= 0, np.maximum(np.round(step), 1), np.minimum(np.round(step), -1)).astype("int64")
        copies.append(frame.assign(**{column: values + step}))
    out = folder / f"{source.stem}-x{factor}.csv"
    pd.concat(copies, ignore_index=True).to_csv(out, index=False)
    return out


def measure(every: list[Variant], rounds: int, existing_home: Path, common_env: dict[str, str]) -> None:
    """``rounds`` runs of every command, in an order that reverses every other round."""
    for round_ in range(rounds):
        order = every if round_ % 2 == 0 else list(reversed(every))
        for variant in order:
            run(variant, existing_home, common_env)
        console.print(f"round {round_ + 1}: " + ", ".join(f"{v.name} {v.walls[-1]:.1f} s" for v in every))


def results(title: str, every: list[Variant]) -> Table:
    table = Table(title=title)
    columns = ("command", "wall s", "CPU s (user+sys)", "fit s (inside)", "wall - fit s", "peak RSS MB", "test ROC AUC")
    for col in columns:
        table.add_column(col, justify="left" if col == "command" else "right")
    for v in every:
        table.add_row(
            v.name,
            spread(v.walls),
            spread(v.cpus),
            spread(v.fits),
            spread([w - f for w, f in zip(v.walls, v.fits, strict=True)]),
            spread(v.peaks, ".0f"),
            "-" if v.auc is None else f"{v.auc:.6f}",
        )
    return table


def ratios(pairs: list[tuple[str, str, Variant, Variant]], medians: dict[str, float]) -> None:
    """Print each (label, key for --json, ours, theirs) ratio per round and keep its median in ``medians``."""
    for label, key, ours, bare in pairs:
        per_round = [o / b for o, b in zip(ours.walls, bare.walls, strict=True)]
        medians[key] = statistics.median(per_round)
        extra = [o - b for o, b in zip(ours.walls, bare.walls, strict=True)]
        cpu = [o / b for o, b in zip(ours.cpus, bare.cpus, strict=True)]
        console.print(
            f"{label} = {spread(per_round)} wall (per round), {spread(cpu)} CPU; wall difference {spread(extra)} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", default="configs/adult.yaml")
    parser.add_argument("--stage-runs", type=int, default=1, help="runs of the stage breakdown per home (0: none)")
    parser.add_argument(
        "--scale",
        type=int,
        default=10,
        help="also train on the config's data grown this many times (see scaled_copy; 0 or 1: not at all)",
    )
    parser.add_argument(
        "--commands",
        default=None,
        help="only these commands on the config's data (comma-separated keys: train0, train, train0_existing, "
        "train_existing, bare, bare_cv, bare_import, bare_mlflow; the baseline's follow theirs); default: all",
    )
    parser.add_argument("--scale-rounds", type=int, default=2, help="rounds on the grown data")
    parser.add_argument(
        "--scale-commands",
        default="train0,bare,train,bare_cv",
        help="the commands run on the grown data: train0 (--cv-folds 0), bare (fit), train (the config's CV), "
        "bare_cv (CV + fit); with --baseline-src, the baseline's train0 and train follow theirs",
    )
    parser.add_argument(
        "--omp-threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS for every command (default: unset, OpenMP uses every core); 1 keeps the fits "
        "steady on a machine other jobs load, as threads then never wait for each other",
    )
    parser.add_argument(
        "--baseline-src",
        default=None,
        help="also run fasttrack train with PYTHONPATH=DIR (another checkout's src), interleaved",
    )
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the figures to this file (bench/targets.py)"
    )
    args = parser.parse_args()
    common_env = {"OMP_NUM_THREADS": str(args.omp_threads)} if args.omp_threads else {}
    config = load_config(args.config)
    load_before = os.getloadavg()
    console.print(f"load average before: {' '.join(f'{v:.2f}' for v in load_before)} ({os.cpu_count()} cores)")
    if common_env:
        console.print(f"every command runs with OMP_NUM_THREADS={args.omp_threads}")
    chosen = [key.strip() for key in args.commands.split(",")] if args.commands else None
    every = variants(args.config, config, args.baseline_src, only=chosen)
    scaled: list[Variant] = []
    scratch = Path(tempfile.mkdtemp(prefix="fasttrack-bench-scaled-"))  # the grown file: never in the repository
    existing_home = Path(tempfile.mkdtemp(prefix="fasttrack-bench-existing-"))
    try:
        if args.stage_runs or any(v.home == "existing" for v in every):
            console.print("preparing the existing home (one untimed fasttrack train --cv-folds 0)")
            setup = [str(BIN / "fasttrack"), "train", "--config", args.config, "--cv-folds", "0"]
            env = {**os.environ, **common_env, "FASTTRACK_HOME": str(existing_home)}
            subprocess.run(setup, cwd=ROOT, env=env, capture_output=True, check=True)
        measure(every, args.rounds, existing_home, common_env)
        if args.scale > 1:
            data = scaled_copy((ROOT / str(config["data"])).resolve(), args.scale, scratch)
            scaled_config = scratch / f"scaled-{Path(args.config).name}"
            settings = yaml.safe_load((ROOT / args.config).read_text(encoding="utf-8"))
            scaled_config.write_text(yaml.safe_dump({**settings, "data": str(data)}), encoding="utf-8")
            console.print(f"{data}: the config's data {args.scale} times, {sum(1 for _ in data.open()) - 1:,} rows")
            keys = [key.strip() for key in args.scale_commands.split(",")]
            scaled = variants(str(scaled_config), {**config, "data": data}, args.baseline_src, only=keys)
            measure(scaled, args.scale_rounds, existing_home, common_env)
        stage_columns: dict[str, list[dict[str, Any]]] = {"fresh home": [], "existing home": []}
        baseline_env = (
            {**common_env, "PYTHONPATH": str(Path(args.baseline_src).resolve())} if args.baseline_src else None
        )
        if baseline_env:
            stage_columns["baseline, fresh home"] = []
        for _ in range(args.stage_runs):
            for column, env in (("fresh home", common_env), ("baseline, fresh home", baseline_env)):
                if env is None:
                    continue
                home = Path(tempfile.mkdtemp(prefix="fasttrack-bench-home-"))
                try:
                    stage_columns[column].append(stages(args.config, home, env))
                except subprocess.CalledProcessError as exc:
                    if env is not baseline_env:
                        raise
                    # train_stages.py patches this tree's modules by name: an older tree may not have them.
                    last = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
                    console.print(f"{column}: no stage breakdown ({' '.join(last) or 'exit ' + str(exc.returncode)})")
                    del stage_columns[column]
                    baseline_env = None
                finally:
                    shutil.rmtree(home, ignore_errors=True)
            stage_columns["existing home"].append(stages(args.config, existing_home, common_env))
    finally:
        shutil.rmtree(existing_home, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    load_after = os.getloadavg()

    console.print(
        results(f"{args.config}: wall seconds, process start to exit, {args.rounds} rounds (median, min-max)", every)
    )
    by_key = {v.key: v for v in every}
    wanted = [
        ("train(cv=0) / bare fit", "train_vs_fit", "train0", "bare"),
        ("train(default) / bare CV + fit", "train_cv_vs_cv_fit", "train", "bare_cv"),
        ("train(cv=0, existing home) / bare fit", "train_existing_vs_fit", "train0_existing", "bare"),
        ("train(default, existing home) / bare CV + fit", "train_cv_existing_vs_cv_fit", "train_existing", "bare_cv"),
        ("bare fit + MLflow import / bare fit", "import_fit_vs_fit", "bare_import", "bare"),
        ("bare fit + plain MLflow / bare fit", "mlflow_fit_vs_fit", "bare_mlflow", "bare"),
        ("train(cv=0) / bare fit + plain MLflow", "train_vs_mlflow_fit", "train0", "bare_mlflow"),
        ("train(cv=0) now / baseline", "train_vs_baseline", "train0", "train0_base"),
        ("train(default) now / baseline", "train_cv_vs_baseline", "train", "train_base"),
        ("baseline: train(cv=0) / bare fit + plain MLflow", "baseline_vs_mlflow_fit", "train0_base", "bare_mlflow"),
    ]
    pairs = [(label, key, by_key[a], by_key[b]) for label, key, a, b in wanted if a in by_key and b in by_key]
    medians: dict[str, float] = {}
    ratios(pairs, medians)
    if scaled:
        title = f"the same, data grown {args.scale} times: wall seconds, {args.scale_rounds} rounds (median, min-max)"
        console.print(results(title, scaled))
        big = {v.key: v for v in scaled}
        wanted = [
            (f"x{args.scale}: train(cv=0) / bare fit", "scaled_train_vs_fit", "train0", "bare"),
            (f"x{args.scale}: train(default) / bare CV + fit", "scaled_train_cv_vs_cv_fit", "train", "bare_cv"),
            (f"x{args.scale}: train(cv=0) now / baseline", "scaled_train_vs_baseline", "train0", "train0_base"),
            (f"x{args.scale}: train(default) now / baseline", "scaled_train_cv_vs_baseline", "train", "train_base"),
        ]
        ratios([(label, key, big[a], big[b]) for label, key, a, b in wanted if a in big and b in big], medians)
    if args.stage_runs:
        console.print(stage_table(stage_columns))
    console.print(f"load average after: {' '.join(f'{v:.2f}' for v in load_after)}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        walls = {v.key: statistics.median(v.walls) for v in every}
        walls |= {f"scaled_{v.key}": statistics.median(v.walls) for v in scaled}
        peaks = {v.key: max(v.peaks) for v in every} | {f"scaled_{v.key}": max(v.peaks) for v in scaled}
        command = " ".join(["bench/training.py", *sys.argv[1:]])
        figures = {"command": command, "ratios": medians, "wall_s": walls, "peak_mb": peaks, "scale": args.scale}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
