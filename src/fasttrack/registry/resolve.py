"""Model URIs to local model folders: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, any MLflow URI, a folder.

Registered versions are fetched once into the local cache (:mod:`fasttrack.registry.cache`). A local folder, and
an explicit version already in the cache, resolve without the tracking store. On the embedded store, ``models:/``
URIs resolve without MLflow at all (its import costs a server seconds of start-up and about 130 MB): the
registry tables are read with ``sqlite3`` and a version not cached yet is copied from its local artifact folder
(:mod:`fasttrack.registry.mlflow_private`), so a server following ``@champion`` never imports it, polls included.
A remote tracking server, or an embedded store this way cannot read, is asked through MLflow.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fasttrack.config import Settings
from fasttrack.errors import ModelNotFoundError
from fasttrack.registry import cache, mlflow_private
from fasttrack.registry.errors import NOT_FOUND, error_code, registry_errors
from fasttrack.registry.layout import CHAMPION
from fasttrack.registry.store import client, configure, is_embedded

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# MLflow's SQL store answers an alias that is not set with INVALID_PARAMETER_VALUE, a missing model with
# RESOURCE_DOES_NOT_EXIST (its REST API passes both on).
_NOT_SET = NOT_FOUND | {"INVALID_PARAMETER_VALUE"}


@dataclass(frozen=True)
class ResolvedModel:
    """A model URI resolved to a local folder, with its registry coordinates where it has them."""

    uri: str
    path: Path
    name: str | None = None
    version: str | None = None
    alias: str | None = None


def default_model_uri(settings: Settings) -> str:
    """The model served or used when none is named: ``FASTTRACK_MODEL``, else the default model's champion."""
    return settings.model or f"models:/{settings.model_name}@{CHAMPION}"


def resolve_model(uri: str | None, settings: Settings) -> ResolvedModel:
    """Resolve a model URI (or a local folder) to a local model folder, downloading registered versions once.

    ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/NAME`` (latest version), ``runs:/...`` and any
    other MLflow artifact URI work. An alias is resolved strictly: one that is not set, ``@champion`` included, is a
    :class:`~fasttrack.errors.ModelNotFoundError` naming the alias and the latest version, never a silent fall-back
    to that version (a first registration killed before its version took ``@champion`` must not be served as if
    it had been promoted; ``fasttrack models promote NAME VERSION`` sets the alias).
    """
    uri = uri or default_model_uri(settings)
    local = Path(uri)
    if "://" not in uri and local.exists():
        return ResolvedModel(uri=uri, path=local)
    if not uri.startswith("models:/"):
        if "://" not in uri and ":/" not in uri:
            raise ModelNotFoundError(f"model not found: {uri} is neither a folder nor a model URI (models:/NAME@ALIAS)")
        return ResolvedModel(uri=uri, path=cache.download(uri, settings, key=uri))
    name, version, alias = parse_models_uri(uri)
    if version:
        found = cache.cached(settings, cache.version_key(settings, name, version))
        if found is not None:
            return ResolvedModel(uri=uri, path=found, name=name, version=version)
    if is_embedded(settings.resolved_tracking_uri(), settings):
        resolved = _resolve_embedded(uri, name, version, alias, settings)
        if resolved is not None:
            return resolved
    with registry_errors(f"resolving {uri}"):
        mlflow_client = client(settings)
        if alias:
            try:
                mv = mlflow_client.get_model_version_by_alias(name, alias)
            except Exception as exc:
                if error_code(exc) not in _NOT_SET:
                    raise
                if not _registered(mlflow_client, name):
                    raise ModelNotFoundError(_not_found(uri, name, None, None)) from None
                latest = _latest_number(mlflow_client, name)
                raise ModelNotFoundError(_alias_not_set(uri, name, alias, latest)) from None
        elif version:
            mv = mlflow_client.get_model_version(name, version)
        else:
            mv = _latest(mlflow_client, name, uri)
        number = str(mv.version)
        path = cache.download(f"models:/{name}/{number}", settings, key=cache.version_key(settings, name, number))
    return ResolvedModel(uri=uri, path=path, name=name, version=number, alias=alias)


def _resolve_embedded(
    uri: str, name: str, version: str | None, alias: str | None, settings: Settings
) -> ResolvedModel | None:
    """``models:/`` on the embedded store without MLflow, as the MLflow path below answers it; ``None`` when the
    store cannot be read this way (MLflow then answers)."""
    with registry_errors(f"resolving {uri}"):
        reader = mlflow_private.RegistryReader.open(settings.embedded_store())
        if reader is None:
            return None
        latest: mlflow_private.StoredVersion | None = None
        registered = False
        try:
            with reader:
                if alias:
                    stored = reader.alias(name, alias)
                elif version:
                    stored = reader.version(name, version)
                else:
                    stored = reader.latest(name)
                if stored is None:
                    latest = reader.latest(name)
                    registered = latest is not None or reader.registered(name)
        except sqlite3.Error:  # e.g. locked by a writer for longer than the timeout: MLflow's own handling
            log.debug("reading the registry tables of %s failed", settings.embedded_store(), exc_info=True)
            return None
        if stored is None:
            if alias and registered:
                raise ModelNotFoundError(_alias_not_set(uri, name, alias, latest.version if latest else None))
            if not version and registered:
                raise ModelNotFoundError(_no_version(uri, name))
            raise ModelNotFoundError(_not_found(uri, name, version, alias))
        key = cache.version_key(settings, name, stored.version)
        path = cache.cached(settings, key)
        if path is None:
            folder = mlflow_private.local_artifacts(stored)
            if folder is None:  # not a local folder after all: MLflow downloads it
                configure(settings)  # models:/ URIs are downloaded from MLflow's process-wide registry URI
                path = cache.download(f"models:/{name}/{stored.version}", settings, key=key)
            else:
                path = cache.fill(
                    settings, key, partial(mlflow_private.copy_version, stored, folder), source=str(folder)
                )
    return ResolvedModel(uri=uri, path=path, name=name, version=stored.version, alias=alias)


def _not_found(uri: str, name: str, version: str | None, alias: str | None) -> str:
    if version:
        return f"resolving {uri}: registered model {name!r} has no version {version}"
    return f"no registered model {name!r} (from {uri}); train one with `fasttrack train`"


def _no_version(uri: str, name: str) -> str:
    """A registered model without a version: what a registration killed between its two MLflow calls leaves."""
    return (
        f"resolving {uri}: registered model {name!r} has no usable version (a registration did not finish); "
        "train one with `fasttrack train`"
    )


def _alias_not_set(uri: str, name: str, alias: str, latest: str | None) -> str:
    """An alias that is not set, with what the user can do instead (never done for them)."""
    if latest is None:
        return _no_version(uri, name)
    hint = f"set it with `fasttrack models promote {name} {latest}`" if alias == CHAMPION else "set it first"
    return (
        f"resolving {uri}: registered model {name!r} has no alias {alias!r} (its latest version is {latest}: "
        f"serve models:/{name}/{latest}, or {hint})"
    )


def _registered(mlflow_client: MlflowClient, name: str) -> bool:
    """Whether registered model ``name`` exists (with or without versions)."""
    try:
        mlflow_client.get_registered_model(name)
    except Exception as exc:
        if error_code(exc) in NOT_FOUND:
            return False
        raise
    return True


def _latest_number(mlflow_client: MlflowClient, name: str) -> str | None:
    """The number of the newest version of ``name`` (``None``: it has none)."""
    versions = mlflow_client.search_model_versions(f"name='{name}'")
    return str(max(int(v.version) for v in versions)) if versions else None


def _latest(mlflow_client: MlflowClient, name: str, uri: str) -> Any:
    versions = mlflow_client.search_model_versions(f"name='{name}'")
    if not versions:
        if _registered(mlflow_client, name):
            raise ModelNotFoundError(_no_version(uri, name))
        raise ModelNotFoundError(_not_found(uri, name, None, None))
    return max(versions, key=lambda v: int(v.version))


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``models:/NAME`` as (name, version, alias)."""
    rest = uri.removeprefix("models:/").strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, None, alias
    parts = rest.split("/")
    if len(parts) == 2 and parts[1].isdigit():
        return parts[0], parts[1], None
    if len(parts) == 1 and parts[0]:
        return parts[0], None, None
    raise ModelNotFoundError(f"cannot parse model URI {uri!r}: use models:/NAME@ALIAS or models:/NAME/VERSION")
