"""The tracking store in force: MLflow pointed at it, a client on it, and the embedded store made on first use.

The embedded default is a SQLite store with local artifacts under ``Settings.home`` (``./.fasttrack/``);
``MLFLOW_TRACKING_URI`` (or ``FASTTRACK_TRACKING_URI``) points everything at a real server instead.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from fasttrack.config import Settings
from fasttrack.registry import mlflow_private
from fasttrack.registry.errors import registry_errors

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

#: The variables ``mlflow.set_tracking_uri`` and ``set_registry_uri`` write as well as setting MLflow's URIs.
_MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def configure(settings: Settings) -> str:
    """Point MLflow at the tracking URI in force and return it; creates the embedded store's folder if used."""
    import mlflow

    from fasttrack.data.object_store import apply_network_defaults

    apply_network_defaults()  # an unreachable server or object store fails in seconds, not minutes
    uri = settings.resolved_tracking_uri()
    if is_embedded(uri, settings):
        settings.home.mkdir(parents=True, exist_ok=True)
    # MLflow also writes the URIs into MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI, for subprocesses it may start;
    # Settings reads the first as the user's choice, so it would point every later Settings of this process (another
    # home, in a notebook or a test) at this store. They are put back as the user left them.
    saved = {name: os.environ.get(name) for name in _MLFLOW_URI_VARIABLES}
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return uri


def is_embedded(uri: str, settings: Settings) -> bool:
    """Whether ``uri`` is the embedded store of ``settings`` (SQLite and artifacts under ``settings.home``)."""
    return uri == settings.embedded_store_uri()


def client(settings: Settings) -> MlflowClient:
    """An MLflow client on the configured tracking and registry URIs (the embedded store made if missing)."""
    from mlflow import MlflowClient

    uri = configure(settings)
    if is_embedded(uri, settings):
        create_embedded_store(settings.embedded_store())
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def check_tracking(settings: Settings) -> str:
    """Make one cheap call to the tracking store in force and return its URI; a store that cannot be reached
    raises a one-line :class:`~fasttrack.errors.RegistryError` now, before a long training run, not after it."""
    uri = settings.resolved_tracking_uri()
    if is_embedded(uri, settings):
        return uri  # made on first use
    with registry_errors("connecting to the tracking store"):
        client(settings).search_experiments(max_results=1)
    return uri


def create_embedded_store(db: Path) -> bool:
    """Create the embedded SQLite store at ``db`` with MLflow's own schema, if it does not exist yet.

    The schema is built on a temporary file next to ``db`` (:func:`~fasttrack.registry.mlflow_private.
    build_tracking_schema`, unsynced), synced once and linked into place: ``db`` is either absent or complete (a
    process killed half-way leaves no half-migrated store), and of two processes creating it at once the first
    one's file wins (a link never replaces a file). Returns whether this call created it. Where MLflow's helpers
    are missing or the file system cannot link files, nothing is done here and MLflow creates the store as before
    when it is opened.
    """
    if db.exists():
        return False
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        if not mlflow_private.build_tracking_schema(tmp):  # pragma: no cover - another MLflow version
            return False
        with tmp.open("rb+") as written:
            os.fsync(written.fileno())
        try:
            os.link(tmp, db)
        except FileExistsError:
            return False  # another process made it meanwhile: theirs is complete too
        except OSError:  # pragma: no cover - file systems without hard links: MLflow makes the store itself
            log.debug("cannot link %s to %s: MLflow creates the store", tmp, db, exc_info=True)
            return False
        _sync_folder(db.parent)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _sync_folder(folder: Path) -> None:
    """Make a new directory entry durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platform-dependent
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
