"""Server start-up and memory by model form: a local folder, and ``models:/sample@champion`` as `make run` serves it.

Trains the sample model (configs/sample.yaml) twice into a temporary FASTTRACK_HOME (versions 1 and 2, champion on
1), then starts ``fasttrack serve`` (one worker, no access log, registry polling at its default interval) once per
form and round, a fresh process each time, in an order that rotates each round:

* ``folder``: ``--model FOLDER``, version 1's model folder;
* ``registry, cached``: ``--model models:/sample@champion`` with version 1 already in the local download cache;
* ``registry, first start``: the same with the cache emptied first (the first ``make run`` after ``make train``).

Each start is timed from process start to ``GET /ready`` answering 200; one ``POST /predict`` follows, and the
resident memory (VmRSS of the process and its children) is read half a second later. Then, on the cached registry
form, ``@champion`` is moved to version 2 (not in the cache) and ``POST /admin/reload`` asked (what a poll does when
the alias moved): the table gives the request's round trip (resolve, fetch into the cache, load, check, swap) and
the memory after it. Cells are the median of the rounds with min-max. A last, untimed run of each form with
``PYTHONPROFILEIMPORTTIME=1`` counts the MLflow modules the server imported (before ready, and by the reload).

Run: ``.venv/bin/python bench/startup.py [--rounds 5] [--json FILE]``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import BIN, ROOT, first_record, free_port, request, rss_mb

READY_TIMEOUT = 60.0
console = Console(width=150)


@dataclass
class Form:
    name: str
    model: str
    empty_cache: bool = False
    reload: bool = False
    ready_s: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    reload_s: list[float] = field(default_factory=list)
    rss_reload_mb: list[float] = field(default_factory=list)
    mlflow_modules: tuple[int, int] | None = None  # (by ready, by the end of the reload)
    errors: list[str] = field(default_factory=list)


def environment(home: Path) -> dict[str, str]:
    """The servers' environment: FastTrack's home in ``home``, no inherited tracking or serving settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTTRACK_", "MLFLOW_"))}
    return {**env, "FASTTRACK_HOME": str(home)}


def fasttrack(home: Path, *args: str) -> None:
    subprocess.run([str(BIN / "fasttrack"), *args], cwd=ROOT, env=environment(home), check=True, capture_output=True)


def prepare(home: Path, tmp: Path) -> tuple[Path, set[Path]]:
    """Versions 1 and 2 of the sample model in ``home`` (champion on 1), version 1 in the download cache.

    Returns version 1's model folder and the cache's entries holding version 1 (put there by ``fasttrack predict
    --model models:/sample/1``, the public way to download a version).
    """
    models = home / "artifacts" / "models"
    fasttrack(home, "train", "--config", "configs/sample.yaml")
    first = sorted(models.glob("m-*"))
    fasttrack(home, "train", "--config", "configs/sample.yaml")
    fasttrack(
        home,
        "predict",
        "--model",
        "models:/sample/1",
        "--data",
        "data/sample/classification.csv",
        "--out",
        str(tmp / "scored.csv"),
    )
    return first[0] / "artifacts", set((home / "models").iterdir())


def set_champion(home: Path, version: str) -> None:
    """Point ``sample@champion`` at ``version`` (MLflow in this process; never in the measured servers)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{(home / 'mlflow.db').resolve()}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias("sample", "champion", version)


def mlflow_modules(log: Path) -> int:
    """MLflow modules a ``PYTHONPROFILEIMPORTTIME=1`` server's log shows imported so far."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    names = (line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:"))
    return sum(1 for name in names if name == "mlflow" or name.startswith("mlflow."))


def run_form(form: Form, home: Path, body: str, log: Path, *, count_imports: bool = False) -> None:
    port = free_port()
    cmd = [str(BIN / "fasttrack"), "serve", "--model", form.model, "--port", str(port), "--no-access-log"]
    env = {**environment(home), **({"PYTHONPROFILEIMPORTTIME": "1"} if count_imports else {})}
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        begin = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _measure(form, proc, base, body, home, log, begin, count_imports)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def _measure(
    form: Form, proc: subprocess.Popen[bytes], base: str, body: str, home: Path, log: Path, begin: float, count: bool
) -> None:
    while time.perf_counter() - begin < READY_TIMEOUT:
        if proc.poll() is not None:
            form.errors.append(f"exited with {proc.returncode}")
            return
        if request(base + "/ready", timeout=1.0)[0] == 200:
            ready = time.perf_counter() - begin
            break
        time.sleep(0.02)
    else:
        form.errors.append(f"not ready after {READY_TIMEOUT:.0f} s")
        return
    at_ready = mlflow_modules(log) if count else 0
    status, text = request(base + "/predict", body)
    if status != 200:
        form.errors.append(f"POST /predict answered {status}: {text[:120]}")
        return
    time.sleep(0.5)
    rss = rss_mb(proc.pid)
    if not count:
        form.ready_s.append(ready)
        form.rss_mb.append(rss)
    if form.reload:
        set_champion(home, "2")
        started = time.perf_counter()
        status, text = request(base + "/admin/reload", "", timeout=60.0)
        elapsed = time.perf_counter() - started
        if status != 200 or json.loads(text).get("version") != "2":
            form.errors.append(f"POST /admin/reload answered {status}: {text[:160]}")
            return
        request(base + "/predict", body)
        time.sleep(0.5)
        if not count:
            form.reload_s.append(elapsed)
            form.rss_reload_mb.append(rss_mb(proc.pid))
    if count:
        form.mlflow_modules = (at_ready, mlflow_modules(log))


def reset(form: Form, home: Path, version_one: set[Path]) -> None:
    """The registry and cache state a form starts from (champion on 1; the cache as the form says)."""
    set_champion(home, "1")
    cache = home / "models"
    for entry in list(cache.iterdir()) if cache.exists() else []:
        if form.empty_cache or entry not in version_one:
            shutil.rmtree(entry)


def spread(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args()
    console.print(f"loadavg before: {Path('/proc/loadavg').read_text().strip()}")
    with tempfile.TemporaryDirectory(prefix="fasttrack-startup-") as name:
        tmp = Path(name)
        home = tmp / "home"
        folder, version_one = prepare(home, tmp)
        body = json.dumps(first_record(folder))
        forms = [
            Form("folder", str(folder)),
            Form("registry, cached", "models:/sample@champion", reload=True),
            Form("registry, first start", "models:/sample@champion", empty_cache=True),
        ]
        for rnd in range(args.rounds):
            shift = rnd % len(forms)
            for form in forms[shift:] + forms[:shift]:
                reset(form, home, version_one)
                run_form(form, home, body, tmp / "server.log")
        for form in forms:
            reset(form, home, version_one)
            run_form(form, home, body, tmp / "imports.log", count_imports=True)
    table = Table(title=f"fasttrack serve, sample model: {args.rounds} rounds (median, min-max), registry polling on")
    columns = ("form", "ready s", "RSS MB", "reload s", "RSS MB after reload", "MLflow modules ready/reload", "errors")
    for col in columns:
        table.add_column(col, justify="left" if col in ("form", "errors") else "right")
    for form in forms:
        imported = "-" if form.mlflow_modules is None else "/".join(str(n) for n in form.mlflow_modules)
        table.add_row(
            form.name,
            spread(form.ready_s, ".2f"),
            spread(form.rss_mb, ".0f"),
            spread(form.reload_s, ".2f"),
            spread(form.rss_reload_mb, ".0f"),
            imported,
            "; ".join(sorted(set(form.errors))),
        )
    console.print(table)
    console.print(f"loadavg after: {Path('/proc/loadavg').read_text().strip()}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {
            form.name: {
                "ready_s": form.ready_s,
                "rss_mb": form.rss_mb,
                "reload_s": form.reload_s,
                "rss_reload_mb": form.rss_reload_mb,
                "mlflow_modules": form.mlflow_modules,
                "errors": form.errors,
            }
            for form in forms
        }
        command = " ".join(["bench/startup.py", *sys.argv[1:]])
        args.json.write_text(json.dumps({"command": command, "forms": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
