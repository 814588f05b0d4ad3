"""Registered versions: registration, aliases, listing and describing them.

A registered version is what a server can serve; the first one of a model becomes ``@champion``, later ones wait
for ``fasttrack models promote`` (:mod:`fasttrack.training.promotion` decides; :func:`promote` moves the alias
by hand).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fasttrack.config import Settings
from fasttrack.errors import AliasMovedError
from fasttrack.registry.errors import ALREADY_EXISTS, NOT_FOUND, error_code, registry_errors
from fasttrack.registry.history import record_move
from fasttrack.registry.layout import CHAMPION, TAG_DATA_PREFIX, TAG_PRIMARY, TAG_PRIMARY_VALUE
from fasttrack.registry.resolve import resolve_model
from fasttrack.registry.store import client

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient


@dataclass(frozen=True)
class RegisteredVersion:
    """A version just registered, and the aliases it got."""

    name: str
    version: str
    aliases: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version, as ``fasttrack models list`` shows it.

    A registered model without any version (what a registration killed between MLflow's two calls, creating the
    model and then its version, leaves) is one row too, with ``version`` ``None`` and the model's creation time:
    listed rather than hidden, so that it is seen and not taken for a missing model.
    """

    name: str
    version: str | None
    aliases: list[str]
    primary_metric: str | None
    primary_metric_value: float | None
    run_id: str | None
    created: pd.Timestamp


@dataclass(frozen=True)
class VersionDetails:
    """One registered version in full, as ``fasttrack models show`` prints it."""

    name: str
    version: str
    aliases: list[str]
    created: pd.Timestamp
    status: str | None
    source: str | None
    run_id: str | None
    tags: dict[str, str]
    metrics: dict[str, float]
    lineage: dict[str, str]


def register_version(
    mlflow_client: MlflowClient,
    model_uri: str,
    name: str,
    run_id: str,
    *,
    primary_metric: str,
    value: float,
    by: str,
) -> RegisteredVersion:
    """Register the logged model ``model_uri`` as a new version of ``name``; the model's first becomes champion.

    The registered model is created on first use; the version is tagged with the primary metric and its value.
    Taking ``@champion`` is an alias move like any other: recorded in the alias history on behalf of ``by``
    (:func:`~fasttrack.registry.history.actor` of the caller's settings), and left to the other one when two first
    versions are registered at once.
    """
    try:
        mlflow_client.create_registered_model(name)
    except Exception as exc:
        if error_code(exc) not in ALREADY_EXISTS:
            raise
    version = mlflow_client.create_model_version(
        name,
        source=model_uri,
        run_id=run_id,
        model_id=model_uri.removeprefix("models:/"),
        tags={TAG_PRIMARY: primary_metric, TAG_PRIMARY_VALUE: str(value)},
    )
    aliases: list[str] = []
    if CHAMPION not in mlflow_client.get_registered_model(name).aliases:
        number = str(version.version)
        try:
            record_move(
                mlflow_client,
                name,
                CHAMPION,
                expected=None,
                to=number,
                decision="registered",
                reason=f"version {number}, the model's first registered version, takes @{CHAMPION}",
                by=by,
            )
            aliases.append(CHAMPION)
        except AliasMovedError:
            pass  # another first version took it meanwhile: this one waits for `fasttrack models promote`
    return RegisteredVersion(name=name, version=str(version.version), aliases=aliases)


def list_versions(settings: Settings, name: str | None = None) -> list[VersionInfo]:
    """Registered model versions (of one model, or of all), newest first within each model; a registered model
    without versions is one row with ``version`` ``None``."""
    import pandas as pd

    with registry_errors("listing models"):
        mlflow_client = client(settings)
        names = [name] if name else sorted(m.name for m in mlflow_client.search_registered_models())
        rows: list[VersionInfo] = []
        for model_name in names:
            aliases_by_version: dict[str, list[str]] = {}
            registered = mlflow_client.get_registered_model(model_name)
            for alias, version in registered.aliases.items():
                aliases_by_version.setdefault(str(version), []).append(alias)
            versions = mlflow_client.search_model_versions(f"name='{model_name}'")
            if not versions:
                rows.append(
                    VersionInfo(
                        name=model_name,
                        version=None,
                        aliases=[],
                        primary_metric=None,
                        primary_metric_value=None,
                        run_id=None,
                        created=pd.Timestamp(registered.creation_timestamp, unit="ms", tz="UTC"),
                    )
                )
            for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
                value = mv.tags.get(TAG_PRIMARY_VALUE)
                rows.append(
                    VersionInfo(
                        name=model_name,
                        version=str(mv.version),
                        aliases=sorted(aliases_by_version.get(str(mv.version), [])),
                        primary_metric=mv.tags.get(TAG_PRIMARY),
                        primary_metric_value=float(value) if value is not None else None,
                        run_id=mv.run_id,
                        created=pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC"),
                    )
                )
        return rows


def promote(settings: Settings, name: str, version: str, alias: str = CHAMPION) -> None:
    """Point ``alias`` (default ``champion``) of registered model ``name`` at ``version``."""
    with registry_errors(f"promoting {name} version {version}"):
        mlflow_client = client(settings)
        mlflow_client.get_model_version(name, version)  # raises "not found" with MLflow's message
        mlflow_client.set_registered_model_alias(name, alias, version)


def describe_version(settings: Settings, name: str, version: str) -> VersionDetails:
    """A registered version (a number, or an alias such as ``champion``) with its run's metrics and data lineage.

    The lineage comes from the training run's ``fasttrack.data.*`` tags, or from the model folder's
    ``fasttrack.json`` when the run is gone.
    """
    import pandas as pd

    with registry_errors(f"reading {name} version {version}"):
        mlflow_client = client(settings)
        if version.isdigit():
            mv = mlflow_client.get_model_version(name, version)
        else:
            mv = mlflow_client.get_model_version_by_alias(name, version.removeprefix("@"))
        number = str(mv.version)
        aliases = sorted(a for a, v in mlflow_client.get_registered_model(name).aliases.items() if str(v) == number)
        metrics: dict[str, float] = {}
        lineage: dict[str, str] = {}
        if mv.run_id:
            try:
                run = mlflow_client.get_run(mv.run_id)
            except Exception as exc:
                if error_code(exc) not in NOT_FOUND:
                    raise
                run = None  # deleted run: the model folder still knows its data
            if run is not None:
                metrics = dict(run.data.metrics)
                lineage = {
                    k.removeprefix(TAG_DATA_PREFIX): v
                    for k, v in run.data.tags.items()
                    if k.startswith(TAG_DATA_PREFIX)
                }
        if not lineage:
            from fasttrack.registry.model_folder import read_metadata

            data = read_metadata(resolve_model(f"models:/{name}/{number}", settings).path).data.model_dump()
            lineage = {k: str(v) for k, v in data.items() if v is not None}
        return VersionDetails(
            name=name,
            version=number,
            aliases=aliases,
            created=pd.Timestamp(mv.creation_timestamp, unit="ms", tz="UTC"),
            status=mv.status,
            source=mv.source,
            run_id=mv.run_id,
            tags=dict(mv.tags),
            metrics=metrics,
            lineage=lineage,
        )
