"""Helpers for tests that run real processes: the ``fasttrack`` command and ``fasttrack serve``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
FASTTRACK = [sys.executable, "-m", "fasttrack"]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a child process: FastTrack's home in ``home``, no inherited tracking settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTTRACK_", "MLFLOW_"))}
    env.update({"FASTTRACK_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200", **extra})
    return env


def run_cli(
    *args: str, home: Path, cwd: Path = REPO, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``fasttrack ARGS`` to completion and capture its output."""
    return subprocess.run(
        [*FASTTRACK, *args],
        cwd=cwd,
        env=clean_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str, code: int = 1) -> str:
    """Assert the command failed with ``code`` and said why in one line, with no traceback; return that line."""
    stderr = result.stderr.strip()
    assert result.returncode == code, (result.returncode, result.stdout, stderr)
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A running ``fasttrack serve`` process."""

    process: subprocess.Popen[str]
    url: str
    log: Path

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")


@contextmanager
def serve(*args: str, home: Path, cwd: Path = REPO, ready_timeout: float = 60, **env: str) -> Iterator[Server]:
    """Start ``fasttrack serve ARGS`` on a free loopback port, wait until ``/ready``, stop it afterwards."""
    port = free_port()
    log = home.parent / f"server-{port}.log"
    home.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [*FASTTRACK, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=cwd,
            env=clean_env(home, **env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{server.output()}")
            try:
                if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not ready after {ready_timeout} s:\n{server.output()}")
            time.sleep(0.2)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen[Any], timeout: float = 15) -> None:
    """Terminate a child process, killing it if it does not exit within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def read_only_folder(folder: Path) -> Iterator[Path]:
    """``folder`` (made if absent) where nobody can create anything, root included, until the block ends.

    Permissions (mode 555) stop other users; root, whom they do not stop, is stopped by the immutable attribute
    (``chattr +i``, on ext4, XFS, Btrfs). Skips the test where neither works, after checking by trying to write.
    """
    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    chattr = (
        subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True) if os.geteuid() == 0 else None
    )
    immutable = chattr is not None and chattr.returncode == 0
    try:
        probe = folder / "probe"
        try:
            probe.mkdir()
        except OSError:
            pass
        else:
            probe.rmdir()
            pytest.skip(f"cannot make {folder} read-only here (no chattr +i for root on this file system)")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


# ----------------------------------------------------------------------------------- models for serving tests
#: The models :func:`train_serving_models` registers: a classifier and a regressor on the bundled samples, and a
#: classifier over every feature kind (numeric with missing values, categorical, boolean).
SERVING_MODELS = ("sample", "sample-regression", "mixed")


def mixed_frame(rows: int = 400, seed: int = 7) -> Any:
    """Every feature kind: ``amount`` (numeric, 10 % missing), ``colour`` (categorical), ``member`` (boolean)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    amount = rng.normal(50, 15, rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    member = rng.random(rows) < 0.5
    signal = (amount - 50) / 15 + np.where(colour == "red", 1.0, -0.5) + member * 0.8 + rng.normal(0, 0.5, rows)
    amount[rng.random(rows) < 0.1] = np.nan
    return pd.DataFrame(
        {"amount": amount, "colour": colour, "member": member, "label": np.where(signal > 0, "yes", "no")}
    )


def serving_settings(home: Path) -> Any:
    """Settings of an embedded store in ``home`` (whatever the environment says)."""
    from fasttrack.config import Settings

    return Settings(home=home, tracking_uri=f"sqlite:///{(home / 'mlflow.db').resolve()}", model=None)


def train_serving_models(home: Path) -> None:
    """Train and register :data:`SERVING_MODELS` (version 1 each, alias ``champion``) into ``home``'s store.

    In-process and without cross-validation: a few seconds in all, where the CLI would take ~8 s per model.
    """
    import pandas as pd

    from fasttrack.config import TrainConfig
    from fasttrack.data.describe import infer_schema
    from fasttrack.training.publish import publish
    from fasttrack.training.train import train

    settings = serving_settings(home)
    jobs = [
        (
            TrainConfig.load(REPO / "configs" / "sample.yaml", cv_folds=0),
            pd.read_csv(REPO / "data/sample/classification.csv"),
        ),
        (
            TrainConfig.load(REPO / "configs" / "sample-regression.yaml", cv_folds=0),
            pd.read_csv(REPO / "data/sample/regression.csv"),
        ),
        (
            TrainConfig(data="memory://mixed.csv", target="label", name="mixed", model="linear", cv_folds=0),
            mixed_frame(),
        ),
    ]
    for config, frame in jobs:
        schema = infer_schema(frame, config.target, config.task)
        result = train(frame, config, schema)
        tracked = publish(result, settings=settings, source=config.data, fingerprint="test")
        assert tracked.registered, f"{config.resolved_name()} was not registered"


def mlflow_client(home: Path) -> Any:
    """An MLflow client on ``home``'s embedded store (the process-wide tracking URI pointed there too, through
    ``fasttrack.registry.store.configure``, which leaves ``MLFLOW_TRACKING_URI`` as it found it: later Settings of
    the test process must not read this store as the user's choice)."""
    import mlflow

    from fasttrack.registry.store import configure

    uri = configure(serving_settings(home))
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def register_copy(home: Path, name: str, *, of: str = "sample", version: str = "1", alias: str | None = None) -> str:
    """Register another version of ``name`` with the same model as ``of``/``version`` (fast: nothing is trained)."""
    client = mlflow_client(home)
    source = client.get_model_version(of, version)
    if not client.search_registered_models(filter_string=f"name='{name}'"):
        client.create_registered_model(name)
    created = client.create_model_version(name, source=source.source, run_id=source.run_id, model_id=source.model_id)
    if alias:
        client.set_registered_model_alias(name, alias, created.version)
    return str(created.version)


def register_broken(home: Path, name: str, folder: Path, *, how: str = "pickle", alias: str | None = None) -> str:
    """Register a version of ``name`` that fails: ``how="pickle"`` cannot load (neither its ``model.onnx`` nor
    its saved pipeline), ``how="check"`` loads but its input example does not fit its own schema (it fails the
    check before serving). Without a manifest, as folders saved before manifests: the loader's own checks refuse
    it, not the manifest's (tests/integration/serving/test_model_integrity_http.py covers those)."""
    import json
    import shutil

    from fasttrack.config import Settings
    from fasttrack.registry.resolve import resolve_model

    original = resolve_model("models:/sample/1", Settings(home=home, tracking_uri=f"sqlite:///{home / 'mlflow.db'}"))
    shutil.copytree(original.path, folder)
    (folder / "fasttrack-manifest.json").unlink()
    if how == "pickle":
        (folder / "model.skops").write_bytes(b"not a skops archive")
        (folder / "extra_files" / "model.onnx").write_bytes(b"not an ONNX model")
    else:
        meta_path = folder / "extra_files" / "fasttrack.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["input_example"] = [{"feature_1": "not a number", "feature_2": 1.0}]
        meta_path.write_text(json.dumps(meta), encoding="utf-8")
    client = mlflow_client(home)
    if not client.search_registered_models(filter_string=f"name='{name}'"):
        client.create_registered_model(name)
    created = client.create_model_version(name, source=str(folder.resolve()))
    if alias:
        client.set_registered_model_alias(name, alias, created.version)
    return str(created.version)


def trained_home(base: Path) -> Path:
    """``base/serving-models``, with :data:`SERVING_MODELS` trained into it once per test session.

    Pass ``tmp_path_factory.getbasetemp()``: unit and integration conftests then share one training run.
    """
    home = base / "serving-models"
    done = home / ".trained"
    if not done.exists():
        home.mkdir(parents=True, exist_ok=True)
        train_serving_models(home)
        done.touch()
    return home


def asgi_scope(
    method: str = "POST",
    path: str = "/predict",
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    root_path: str = "",
) -> dict[str, Any]:
    """An ASGI HTTP scope as Uvicorn builds it (JSON content type by default), to drive ASGI apps directly."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": root_path,
        "query_string": query,
        "headers": [(b"content-type", b"application/json")] if headers is None else headers,
        "client": ("10.0.0.1", 40000),
        "server": ("testserver", 80),
    }


# ------------------------------------------------------------------ small models of every kind, for ONNX tests
# Small models: the point is the conversion, not the fit.
PARAMS: dict[str, dict[str, Any]] = {
    "linear": {},
    "random_forest": {"n_estimators": 15, "max_depth": 6},
    "hist_gradient_boosting": {"max_iter": 25},
    "xgboost": {"n_estimators": 25, "max_depth": 3},
}
TASKS = ("binary", "multiclass", "regression")


def kinds_frame(task: str, rows: int = 400, seed: int = 0) -> Any:
    """Numeric (with gaps), boolean, and two categorical (with gaps and two rare categories) features; the
    target ``y`` for ``task``: binary (yes/no), multiclass (0, 1, 2) or regression."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, rows)
    a[rng.random(rows) < 0.1] = np.nan
    b = rng.normal(5, 2, rows)
    flag = rng.random(rows) < 0.4
    colour = rng.choice(["red", "green", "blue", "rare1", "rare2"], rows, p=[0.4, 0.3, 0.28, 0.01, 0.01])
    colour = colour.astype(object)
    colour[rng.random(rows) < 0.1] = None
    size = rng.choice(["S", "M", "L"], rows)
    signal = np.nan_to_num(a) - (b - 5) / 2 + flag + (colour == "red") + (size == "L") + rng.normal(0, 0.3, rows)
    frame = pd.DataFrame({"a": a, "b": b, "flag": flag, "colour": colour, "size": size})
    if task == "regression":
        frame["y"] = signal * 10 + 100
    elif task == "binary":
        frame["y"] = np.where(signal > 0.5, "yes", "no")
    else:
        frame["y"] = np.digitize(signal, [0.0, 1.2]).astype(int)  # integer labels 0, 1, 2
    return frame


def fit(model: str, task: str, **overrides: Any) -> Any:
    """A small model of ``model``'s kind for ``task`` (binary, multiclass or regression) on :func:`kinds_frame`."""
    from fasttrack.config import TrainConfig
    from fasttrack.data.describe import infer_schema
    from fasttrack.training.train import train

    frame = kinds_frame(task)
    resolved = "regression" if task == "regression" else "classification"
    values: dict[str, Any] = {
        "data": "memory://mixed.csv",
        "target": "y",
        "name": "mixed",
        "model": model,
        "task": resolved,
        "params": PARAMS[model],
        "cv_folds": 0,
    }
    values.update(overrides)
    return train(frame, TrainConfig.model_validate(values), infer_schema(frame, "y", resolved))
