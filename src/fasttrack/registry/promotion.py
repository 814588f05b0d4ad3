"""Promotion in the registry: who holds an alias, the rows to compare on, and the decision recorded.

:mod:`fasttrack.training.promotion` scores the champion and the challenger on the same rows and decides; this
module reads what it needs from MLflow (the versions, the alias holder, the challenger's held-out test part that
every training run logs as ``reports/holdout.parquet``, and each version's record of the rows it trained on,
``reports/train_rows.parquet``) and writes the outcome: the alias moved when the decision says so, and the decision,
both scores, the metric, the margin, the improvement's confidence interval and the rows used and left out as
``fasttrack.promotion.*`` tags on both versions, so the registry keeps the reason every champion is the champion, and
as an event of the alias history (:mod:`fasttrack.registry.history`, which also makes the move safe against a
concurrent one). A server following ``@champion`` sees the alias move.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fasttrack.config import Settings
from fasttrack.errors import ConfigError, ModelNotFoundError
from fasttrack.registry.cache import download_artifacts
from fasttrack.registry.errors import registry_errors
from fasttrack.registry.history import AliasEvent, Comparison, actor, record_move
from fasttrack.registry.layout import HOLDOUT_ARTIFACT, TRAIN_ROWS_ARTIFACT
from fasttrack.registry.model_folder import read_metadata
from fasttrack.registry.resolve import resolve_model
from fasttrack.registry.store import client, configure

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from fasttrack.training.split import TrainingRows

TAG_PREFIX = "fasttrack.promotion."
Decision = Literal["promoted", "rejected", "forced", "no-champion", "already-champion"]


@dataclass(frozen=True)
class Contender:
    """One side of a comparison: a version and how it scored on the comparison data."""

    version: str
    score: float | None = None
    metrics: dict[str, float] | None = None


@dataclass(frozen=True)
class PromotionResult:
    """What :func:`fasttrack.training.promotion.promote_challenger` decided, on what evidence, and whether it moved the
    alias."""

    name: str
    alias: str
    decision: Decision
    reason: str
    challenger: Contender
    champion: Contender | None = None
    metric: str | None = None
    margin: float = 0.0
    data: str | None = None
    rows: int = 0
    decided_at: str = ""
    #: Rows of the comparison data left out because one of the versions trained on them (``rows`` were used).
    excluded: int = 0
    #: The challenger's improvement on ``metric`` (positive: better, in the metric's direction), and its paired
    #: bootstrap confidence interval (``low``, ``high``) at ``confidence`` over ``resamples`` resamples.
    improvement: float | None = None
    interval: tuple[float, float] | None = None
    confidence: float | None = None
    resamples: int = 0
    #: Versions with no record of their training rows (registered before FastTrack kept one): rows they trained on
    #: may be among those used.
    unrecorded: tuple[str, ...] = ()

    @property
    def moved(self) -> bool:
        """Whether the alias now points at the challenger because of this call."""
        return self.decision in ("promoted", "forced", "no-champion")


@dataclass(frozen=True)
class Standing:
    """Where a promotion starts: the challenger's version number and the version holding the alias, if any."""

    challenger: str
    holder: str | None


def standing(settings: Settings, name: str, challenger: str, alias: str) -> Standing:
    """The challenger version (``ModelNotFoundError`` if ``name`` has none such) and the holder of ``alias``."""
    with registry_errors(f"promoting {name} version {challenger}"):
        mlflow_client = client(settings)
        candidate = mlflow_client.get_model_version(name, challenger)  # "not found" with MLflow's message
        holder = mlflow_client.get_registered_model(name).aliases.get(alias)
        return Standing(str(candidate.version), str(holder) if holder is not None else None)


def model_target(settings: Settings, name: str, version: str) -> str:
    """The target column of a registered version (what a labelled comparison data set must contain)."""
    return read_metadata(resolve_model(f"models:/{name}/{version}", settings).path).target


def run_training_rows(settings: Settings, run_id: str) -> TrainingRows | None:
    """The record of the rows the model of training run ``run_id`` was fitted on, or ``None`` when it has none."""
    from fasttrack.training.split import TrainingRows

    configure(settings)
    with tempfile.TemporaryDirectory(prefix="fasttrack-rows-") as tmp:
        try:
            path = download_artifacts(f"runs:/{run_id}/{TRAIN_ROWS_ARTIFACT}", Path(tmp))
        except ModelNotFoundError:
            return None
        return TrainingRows.read(path)


def held_out_rows(settings: Settings, name: str, version: str) -> pd.DataFrame:
    """The held-out test part (features and target) logged by the training run of ``name`` ``version``.

    ``ConfigError`` when the version has no run, or its run no such part (trained before FastTrack recorded it):
    the comparison then needs labelled data from the caller.
    """
    import pandas as pd

    with registry_errors(f"reading the held-out rows of {name} version {version}"):
        run_id = client(settings).get_model_version(name, version).run_id
    if not run_id:
        raise ConfigError(f"version {version} has no training run, so no held-out data: give --data FILE")
    with tempfile.TemporaryDirectory(prefix="fasttrack-holdout-") as tmp:
        try:
            path = download_artifacts(f"runs:/{run_id}/{HOLDOUT_ARTIFACT}", Path(tmp))
        except ModelNotFoundError:
            raise ConfigError(
                f"version {version}'s run has no {HOLDOUT_ARTIFACT} (trained before FastTrack recorded its "
                "held-out rows): give labelled data to compare on with --data FILE"
            ) from None
        return pd.read_parquet(path)


def record_promotion(settings: Settings, result: PromotionResult) -> AliasEvent | None:
    """Move ``result.alias`` to the challenger when the decision moved it, and record the decision: an event in the
    alias history (:func:`fasttrack.registry.history.record_move`) and ``fasttrack.promotion.*`` tags on both
    versions. Nothing is recorded for a challenger that already held the alias (``None``).

    The decision was made against the version holding the alias then (``result.champion``, or none): if another
    promotion or a rollback moved the alias since, nothing is moved or written and
    :class:`~fasttrack.errors.AliasMovedError` names the new holder, so the caller decides again.
    """
    if result.decision == "already-champion":
        return None
    comparison = None
    if result.champion is not None:
        comparison = Comparison(
            metric=result.metric or "",
            challenger=result.challenger.version,
            challenger_score=result.challenger.score,
            champion=result.champion.version,
            champion_score=result.champion.score,
            margin=result.margin,
            data=result.data,
            rows=result.rows,
        )
    with registry_errors(f"promoting {result.name} version {result.challenger.version}"):
        return record_move(
            client(settings),
            result.name,
            result.alias,
            expected=result.champion.version if result.champion is not None else None,
            to=result.challenger.version if result.moved else None,
            decision=result.decision,
            reason=result.reason,
            by=actor(settings),
            comparison=comparison,
            then=lambda mlflow_client: _record(mlflow_client, result),
        )


def _record(mlflow_client: MlflowClient, result: PromotionResult) -> None:
    """Write the decision and its evidence as ``fasttrack.promotion.*`` tags on both versions."""
    shared = {
        "decision": result.decision,
        "reason": result.reason,
        "alias": result.alias,
        "challenger_version": result.challenger.version,
        "margin": f"{result.margin:g}",
        "at": result.decided_at,
    }
    if result.champion is not None:
        shared.update(
            {
                "champion_version": result.champion.version,
                "metric": result.metric or "",
                "challenger_score": repr(result.challenger.score),
                "champion_score": repr(result.champion.score),
                "data": result.data or "",
                "rows": str(result.rows),
                "excluded": str(result.excluded),
            }
        )
    if result.interval is not None:
        shared.update(
            {
                "improvement": repr(result.improvement),
                "interval_low": repr(result.interval[0]),
                "interval_high": repr(result.interval[1]),
                "confidence": f"{result.confidence:g}",
                "resamples": str(result.resamples),
            }
        )
    if result.unrecorded:
        shared["unrecorded"] = ",".join(result.unrecorded)
    sides = [(result.challenger.version, "challenger")]
    if result.champion is not None:
        sides.append((result.champion.version, "champion"))
    for version, role in sides:
        for key, value in {**shared, "role": role}.items():
            mlflow_client.set_model_version_tag(result.name, version, TAG_PREFIX + key, value[:5000])
