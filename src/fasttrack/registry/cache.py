"""The local cache of downloaded models: each registered version fetched once, atomically, under ``home/models/``.

Registered versions are immutable, so a version in the cache never needs the tracking store again. A folder is
fetched into a temporary folder beside the cache, checked against its manifest (:mod:`fasttrack.registry.manifest`)
and renamed into place only once complete and whole, so the cache holds checked model folders or nothing, and of two
processes fetching the same version the first one's copy stays. A download that fails its check is removed, never
cached: once the store is repaired the next fetch gets the good copy. A cached folder that a load refuses later
(altered on disk, or broken in a way only loading shows) is dropped with :func:`evict`, for the same reason.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from fasttrack.config import Settings
from fasttrack.errors import ModelNotFoundError, RegistryError
from fasttrack.registry import manifest
from fasttrack.registry.errors import NOT_FOUND, error_code, registry_errors

log = logging.getLogger(__name__)

#: Fills a given empty folder and returns the model folder it made there (the folder itself or one inside it).
Fetch = Callable[[Path], Path]


def version_key(settings: Settings, name: str, version: str) -> str:
    """The cache key of a registered version: versions are numbered per tracking store."""
    return f"{settings.resolved_tracking_uri()}|{name}|{version}"


def folder_for(settings: Settings, key: str) -> Path:
    """Where the model of ``key`` is (or would be) cached."""
    return settings.home / "models" / hashlib.sha256(key.encode()).hexdigest()[:16]


def cached(settings: Settings, key: str) -> Path | None:
    """The cached model folder of ``key``, when it was fetched before (complete: fetches are atomic)."""
    folder = folder_for(settings, key)
    return folder if (folder / "MLmodel").is_file() else None


def fill(settings: Settings, key: str, fetch: Fetch, *, source: str) -> Path:
    """The cached model folder of ``key``, fetched first (by ``fetch``, from ``source``) when not cached yet.

    The fetched copy is checked against its manifest before it is renamed into place: a copy that fails
    (:class:`~fasttrack.registry.manifest.IntegrityError`, naming the file) is removed and nothing is cached.
    """
    found = cached(settings, key)
    if found is not None:
        return found
    folder = folder_for(settings, key)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=folder.parent))
    try:
        local = fetch(tmp)
        if not (local / "MLmodel").is_file():
            raise ModelNotFoundError(f"{source} is not a model (no MLmodel file)")
        manifest.verify(local)
        try:
            local.rename(folder)
        except OSError:
            if not (folder / "MLmodel").is_file():  # another process won the race: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def evict(settings: Settings, folder: Path) -> bool:
    """Drop ``folder`` from the cache, when it is a cached model folder (any other path is left alone); whether it
    was dropped. Renamed aside first, in one step, then deleted: no reader sees a half-deleted folder under the
    cache's name, and the next fetch of its version downloads it again."""
    root = (settings.home / "models").resolve()
    try:
        resolved = folder.resolve()
    except OSError:
        return False
    if resolved.parent != root or resolved.name.startswith(".") or not resolved.is_dir():
        return False
    aside = Path(tempfile.mkdtemp(prefix=".evicted-", dir=root))
    try:
        resolved.rename(aside / resolved.name)
    except OSError:  # gone already (another process evicted it) or not ours to move
        shutil.rmtree(aside, ignore_errors=True)
        return False
    shutil.rmtree(aside, ignore_errors=True)
    log.info("dropped %s from the model cache: its next load downloads it again", resolved.name)
    return True


def download(artifact_uri: str, settings: Settings, *, key: str) -> Path:
    """The cached model folder of ``key``, downloaded from ``artifact_uri`` with MLflow when not cached yet."""
    return fill(settings, key, lambda into: download_artifacts(artifact_uri, into), source=artifact_uri)


def download_artifacts(artifact_uri: str, into: Path) -> Path:
    """MLflow's download of ``artifact_uri`` (any MLflow artifact URI) into the folder ``into``; one-line errors.

    A missing artifact is a :class:`~fasttrack.errors.ModelNotFoundError` ``not found: URI``, known from MLflow's
    error code where the store gives one (a local artifact store, a missing bucket) and otherwise from a listing
    of ``artifact_uri``, as MLflow keeps the failures of a download's files only as text (see below).
    """
    import mlflow

    what = f"downloading {artifact_uri}"
    with registry_errors(what):
        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(into)))
        except Exception as exc:
            code = error_code(exc)
            if code in NOT_FOUND:
                raise ModelNotFoundError(f"{what}: not found: {artifact_uri}") from None
            if code != "INTERNAL_ERROR":
                raise
            # MLflow's ArtifactRepository.download_artifacts catches each file's exception and raises one
            # MlflowException listing them as text, with INTERNAL_ERROR unless they were all MlflowExceptions of
            # one code (so botocore's and requests' errors end up here). Asked again, by a listing: nothing
            # there means not found; a listing that fails raises its own, structured, error.
            if not mlflow.artifacts.list_artifacts(artifact_uri=artifact_uri):
                raise ModelNotFoundError(f"{what}: not found: {artifact_uri}") from None
            # No structured signal left: the failures are only in the message, each file's exception text after
            # a header line; its last line is the last failure's own text (or its traceback's last line).
            lines = [line.strip() for line in str(getattr(exc, "message", exc)).splitlines() if line.strip()]
            raise RegistryError(f"{what}: {lines[-1] if lines else type(exc).__name__}") from None
