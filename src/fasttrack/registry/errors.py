"""MLflow's, the network's and object stores' exceptions as one-line FastTrack errors.

Decided from what the exceptions carry, not from their wording: MLflow's error code (``RESOURCE_DOES_NOT_EXIST``,
...), the exception that caused it (requests' ``ConnectionError`` when a tracking server cannot be reached; the
``OSError`` under it says why), and botocore's error codes for artifact stores (``data.object_store``).

Nothing here imports MLflow: an ``MlflowException`` can only have been raised once MLflow is imported, so its type
is looked up among the modules already loaded (a server resolving models without MLflow never pays its import).
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from fasttrack.errors import FastTrackError, ModelNotFoundError, RegistryError

#: MLflow's error codes (``mlflow.protos.databricks_pb2.ErrorCode`` names) for a registry object that is not there.
NOT_FOUND = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})
#: ... and for one that exists already.
ALREADY_EXISTS = frozenset({"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"})


@contextmanager
def registry_errors(what: str) -> Iterator[None]:
    """Turn MLflow's and the network's exceptions raised inside into one-line FastTrack errors about ``what``.

    ``FastTrackError`` passes through; an exception none of the rules recognises is raised unchanged.
    """
    try:
        yield
    except FastTrackError:
        raise
    except Exception as exc:
        error = registry_error(exc, what)
        if error is None:
            raise
        raise error from None


def registry_error(exc: BaseException, what: str) -> FastTrackError | None:
    """The one-line error for ``exc`` raised while doing ``what``, or ``None`` when it is not one of the registry's."""
    full = no_space(exc)
    if full is not None:
        return RegistryError(f"{what}: {full}")
    code = error_code(exc)
    if code is not None:
        message = mlflow_message(exc)
        if code in NOT_FOUND:
            return ModelNotFoundError(f"{what}: {message}")
        return RegistryError(f"{what}: {unreachable_server(exc) or message}")
    store = _object_store_message(exc)
    if store is not None:
        return RegistryError(f"{what}: {store}")
    failures = _copy_failures(exc)
    if failures:  # a copy of a folder (a model into the cache) that failed: the first file's error says why
        return RegistryError(f"{what}: copying {failures[0][0]}: {failures[0][2]}")
    if isinstance(exc, OSError):  # ConnectionError included
        return RegistryError(f"{what}: {exc}")
    return None


def _copy_failures(exc: BaseException) -> list[tuple[str, str, str]]:
    """The (source, target, error text) of each file ``shutil.copytree`` could not copy, when ``exc`` is its
    ``shutil.Error``; else nothing."""
    if not isinstance(exc, shutil.Error) or not exc.args or not isinstance(exc.args[0], list):
        return []
    return [(str(e[0]), str(e[1]), str(e[2])) for e in exc.args[0] if isinstance(e, tuple) and len(e) == 3]


def error_code(exc: BaseException) -> str | None:
    """MLflow's error code of ``exc`` (e.g. ``RESOURCE_DOES_NOT_EXIST``); ``None`` if it is no ``MlflowException``."""
    exceptions = sys.modules.get("mlflow.exceptions")
    if exceptions is None or not isinstance(exc, exceptions.MlflowException):
        return None
    return str(exc.error_code)


def mlflow_message(exc: BaseException) -> str:
    """The first line of an ``MlflowException``'s message (its type's name when it has none)."""
    message = str(getattr(exc, "message", "") or "")
    return message.splitlines()[0] if message.strip() else type(exc).__name__


#: ``errno`` values of a write the disk refused: no space, over quota, over the file size limit (``ulimit -f``).
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def no_space(exc: BaseException) -> str | None:
    """A short line when ``exc`` comes from a full disk (an artifact file or the SQLite store), else ``None``.

    Found from what the exceptions carry, wherever MLflow and SQLAlchemy wrapped them: an ``OSError`` whose
    ``errno`` says the disk is full, or SQLite's own ``SQLITE_FULL`` code (``sqlite3.Error.sqlite_errorcode``).
    SQLite rolls a transaction that could not be written back, and a run's artifacts are written before its
    version is registered, so what was stored before stays as it was.
    """
    for link in causes(exc):
        if isinstance(link, OSError) and link.errno in _FULL_ERRNOS:
            where = f" writing {link.filename}" if link.filename else ""
            return f"no space left on the device{where} ({link.strerror}); free some space and try again"
        for _source, target, why in _copy_failures(link):
            # shutil.copytree keeps each file's error as text only: the OS's own words for the errno (English:
            # Python does not set the C library's locale) are what is left to recognise
            full = next((os.strerror(n) for n in _FULL_ERRNOS if os.strerror(n) in why), None)
            if full is not None:
                return f"no space left on the device writing {target} ({full}); free some space and try again"
        if isinstance(link, sqlite3.Error) and getattr(link, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return "no space left on the device of the SQLite store (database or disk is full); free some space"
    return None


def unreachable_server(exc: BaseException) -> str | None:
    """A short line when ``exc`` was caused by a connection to the tracking server that failed, else ``None``.

    MLflow's REST client raises an ``MlflowException`` while handling requests' ``ConnectionError`` (or
    ``Timeout``), which stays its cause or context; that exception's request names the server, and the
    ``OSError`` under it (refused, unknown host, timed out) says why.
    """
    requests = sys.modules.get("requests.exceptions")
    if requests is None:
        return None
    for link in causes(exc):
        if isinstance(link, requests.ConnectionError | requests.Timeout):
            url = getattr(getattr(link, "request", None), "url", None)
            at = f" at {_server_of(url)}" if url else ""
            reason = next((e.strerror for e in causes(link) if isinstance(e, OSError) and e.strerror), None)
            why = f" ({reason})" if reason else ""
            return f"cannot reach the tracking server{at}{why}; is it running? (MLFLOW_TRACKING_URI)"
    return None


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception behind it: ``__cause__``, ``__context__`` and urllib3's ``reason``, once each."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        todo.extend(e for e in (current.__cause__, current.__context__, reason) if isinstance(e, BaseException))


def _server_of(url: str) -> str:
    """The server part of a request URL to MLflow's REST API: what comes before ``/api/`` (or ``/ajax-api/``)."""
    parts = urlsplit(url)
    path = parts.path
    for api in ("/api/", "/ajax-api/"):
        if api in path:
            path = path[: path.index(api)]
            break
    else:
        path = ""
    return f"{parts.scheme}://{parts.netloc}{path}"


def _object_store_message(exc: BaseException) -> str | None:
    """One line for an object-store failure under MLflow (botocore's errors when artifacts are on S3)."""
    from fasttrack.data.object_store import error_message, is_object_store_error

    if not is_object_store_error(exc):
        return None
    return error_message(exc) or str(exc).strip().splitlines()[0]
