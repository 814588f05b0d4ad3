"""Model URIs to local model folders: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, any MLflow URI, a folder.

Registered versions are downloaded once into the local cache (:mod:`fasttrack.registry.cache`); a local folder,
and an explicit version already in the cache, resolve without MLflow: no import, no call to the tracking store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fasttrack.config import Settings
from fasttrack.errors import ModelNotFoundError
from fasttrack.registry import cache
from fasttrack.registry.errors import NOT_FOUND, error_code, mlflow_message, registry_errors
from fasttrack.registry.layout import CHAMPION
from fasttrack.registry.store import client

if TYPE_CHECKING:
    from mlflow import MlflowClient

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
    other MLflow artifact URI work; a ``@champion`` that is not set falls back to the latest version, any other
    alias that is not set is a :class:`~fasttrack.errors.ModelNotFoundError`.
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
    with registry_errors(f"resolving {uri}"):
        mlflow_client = client(settings)
        if alias:
            try:
                mv = mlflow_client.get_model_version_by_alias(name, alias)
            except Exception as exc:
                if error_code(exc) not in _NOT_SET:
                    raise
                if alias != CHAMPION:
                    raise ModelNotFoundError(f"resolving {uri}: {mlflow_message(exc)}") from None
                mv = _latest(mlflow_client, name, uri)
        elif version:
            mv = mlflow_client.get_model_version(name, version)
        else:
            mv = _latest(mlflow_client, name, uri)
        number = str(mv.version)
        path = cache.download(f"models:/{name}/{number}", settings, key=cache.version_key(settings, name, number))
    return ResolvedModel(uri=uri, path=path, name=name, version=number, alias=alias)


def _latest(mlflow_client: MlflowClient, name: str, uri: str) -> Any:
    versions = mlflow_client.search_model_versions(f"name='{name}'")
    if not versions:
        raise ModelNotFoundError(f"no registered model {name!r} (from {uri}); train one with `fasttrack train`")
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
