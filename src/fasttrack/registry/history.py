"""Alias history: every move of a registered model's aliases that FastTrack makes, recorded as it is made.

MLflow keeps where an alias points, not where it pointed. Every move FastTrack makes (a promotion, a rollback, the
first registered version taking ``@champion``) and every promotion decision that kept the alias goes through
:func:`record_move`, which writes one event: who or what moved it (:func:`actor`), when, the version before and
after, the decision, its reason and, after a comparison, both scores.

**Storage.** One registered-model tag per event, ``fasttrack.alias_history.<UTC time>-<random>``, whose value is the
event as compact JSON. A key no other writer can pick means that concurrent writers never overwrite each other's
events (one tag holding a list would lose one of two concurrent appends); its fixed-width time sorts the events.
MLflow validates registered-model tag values up to 100,000 characters, but its SQL stores keep them in a
``VARCHAR(5000)`` column (``registered_model_tags.value``), which PostgreSQL and MySQL enforce, so an event is kept
within 5,000 characters by shortening its reason (and data source) when needed.

**Races.** A move is made under the alias's lock (:class:`~fasttrack.registry.alias_lock.AliasLock`) and only if the
alias still points where the caller's decision was made against (``expected``); otherwise
:class:`~fasttrack.errors.AliasMovedError` says where it points now and nothing is written: the caller decides
again. Under the lock, an event's key is also made to sort after the alias's previous event, whatever the clocks of
the machines say, so the history of one alias is a chain: each event's "before" is the previous one's "after".

**What is not seen.** A move made outside FastTrack (MLflow's UI, its API) leaves no event; :func:`read_history`
still reports every alias's current holder, and says when it differs from the last recorded move. The alias is
moved before its event is written: a process killed between the two leaves a move without an event, which shows
the same way.
"""

from __future__ import annotations

import getpass
import json
import math
import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fasttrack.config import Settings
from fasttrack.errors import AliasError, AliasMovedError, ConfigError, ModelNotFoundError
from fasttrack.registry.alias_lock import AliasLock
from fasttrack.registry.errors import NOT_FOUND, error_code, registry_errors
from fasttrack.registry.layout import TAG_ALIAS_HISTORY
from fasttrack.registry.store import client

if TYPE_CHECKING:
    from mlflow import MlflowClient

#: Prefix of the event tags of a registered model: ``fasttrack.alias_history.<time>-<random>``.
HISTORY_PREFIX = TAG_ALIAS_HISTORY
#: The longest tag value every MLflow SQL store keeps (``registered_model_tags.value`` is ``VARCHAR(5000)``).
MAX_VALUE = 5000
#: How many times a rollback or a promotion plans again when the alias moves under it before it gives up.
ATTEMPTS = 3

_TIME = "%Y%m%dT%H%M%S.%fZ"  # fixed width, so the keys sort by time
_TIME_WIDTH = 23


@dataclass(frozen=True)
class Comparison:
    """The scores behind a promotion decision: both versions on the same rows."""

    metric: str
    challenger: str
    challenger_score: float | None
    champion: str
    champion_score: float | None
    margin: float = 0.0
    data: str | None = None
    rows: int = 0


@dataclass(frozen=True)
class AliasEvent:
    """One recorded decision about an alias: a move (``before`` != ``after``), or a promotion that kept it.

    ``decision`` is a promotion's (``promoted``, ``forced``, ``no-champion``, ``rejected``), ``rollback``, or
    ``registered`` (a model's first version taking ``@champion``). ``by`` is who or what made it (:func:`actor`),
    ``host`` the machine it ran on; ``comparison`` holds both scores when there was a comparison.
    """

    id: str
    alias: str
    at: datetime
    before: str | None
    after: str | None
    decision: str
    by: str
    host: str = ""
    reason: str = ""
    comparison: Comparison | None = None

    @property
    def moved(self) -> bool:
        """Whether the alias pointed elsewhere after this event than before it."""
        return self.before != self.after

    def fields(self) -> dict[str, Any]:
        """The event as plain JSON values (the time in ISO form, non-finite scores as ``None``): what a tag stores,
        and what ``fasttrack models history --json`` prints (with the event's ``id``, which the tag's key holds)."""
        data: dict[str, Any] = {
            "alias": self.alias,
            "at": self.at.isoformat(timespec="microseconds"),
            "before": self.before,
            "after": self.after,
            "decision": self.decision,
            "by": self.by,
            "host": self.host,
            "reason": self.reason,
        }
        if self.comparison is not None:
            c = self.comparison
            data["comparison"] = {
                "metric": c.metric,
                "challenger": c.challenger,
                "challenger_score": _finite(c.challenger_score),
                "champion": c.champion,
                "champion_score": _finite(c.champion_score),
                "margin": c.margin,
                "data": c.data,
                "rows": c.rows,
            }
        return data


@dataclass(frozen=True)
class AliasHistory:
    """The recorded events of a registered model's aliases (oldest first), where each alias points now, and notes
    on what the events cannot show (moves made outside FastTrack, unreadable entries)."""

    name: str
    events: list[AliasEvent]
    holders: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def last(self, alias: str) -> AliasEvent | None:
        """The latest recorded event of ``alias``."""
        return next((e for e in reversed(self.events) if e.alias == alias), None)


def actor(settings: Settings | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Who or what is moving an alias: ``FASTTRACK_ACTOR`` when set; else, inside an Airflow task, ``airflow:DAG/RUN``
    from Airflow's task context variables (``AIRFLOW_CTX_DAG_ID``, ``AIRFLOW_CTX_DAG_RUN_ID``); else the OS user."""
    if settings is not None and settings.actor:
        return settings.actor
    env = os.environ if environ is None else environ
    dag = env.get("AIRFLOW_CTX_DAG_ID")
    if dag:
        run = env.get("AIRFLOW_CTX_DAG_RUN_ID")
        return f"airflow:{dag}/{run}" if run else f"airflow:{dag}"
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in the environment nor in the password database (some containers)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


# -------------------------------------------------------------------------------------------------- reading
def read_history(settings: Settings, name: str, alias: str | None = None) -> AliasHistory:
    """The alias history of registered model ``name`` (of one ``alias``, or of all), with the current holders.

    Raises ``ModelNotFoundError`` when there is no such registered model.
    """
    with registry_errors(f"reading the alias history of {name}"):
        model = client(settings).get_registered_model(name)
        return history_of(name, dict(model.aliases), dict(model.tags), alias)


def history_of(
    name: str, aliases: Mapping[str, Any], tags: Mapping[str, str], alias: str | None = None
) -> AliasHistory:
    """The history held by a registered model's ``tags``, against where its ``aliases`` point now."""
    events: list[AliasEvent] = []
    unreadable = 0
    for key in sorted(k for k in tags if k.startswith(HISTORY_PREFIX)):
        event = decode(key.removeprefix(HISTORY_PREFIX), tags[key] or "")
        if event is None:
            unreadable += 1
        elif alias is None or event.alias == alias:
            events.append(event)
    holders = {a: str(v) for a, v in aliases.items() if alias is None or a == alias}
    history = AliasHistory(name, events, dict(sorted(holders.items())))
    notes = [_note(history, a) for a in sorted(set(holders) | {e.alias for e in events})]
    if unreadable:
        notes.append(f"{unreadable} {HISTORY_PREFIX}* tag(s) could not be read (edited by hand?) and are not shown")
    return replace(history, notes=[n for n in notes if n])


def _note(history: AliasHistory, alias: str) -> str:
    """What the events of ``alias`` do not show about where it points now ('' when they agree)."""
    holder, last = history.holders.get(alias), history.last(alias)
    if last is None:
        return (
            f"version {holder} holds @{alias}, but no move of it is recorded: it was set before FastTrack recorded "
            "alias history, or outside FastTrack (MLflow's UI or API), which leaves no event"
        )
    if last.after == holder:
        return ""
    if holder is None:
        return f"@{alias} is not set, but its last recorded move set version {last.after}: removed outside FastTrack"
    return (
        f"@{alias} points at version {holder}, but its last recorded move set version {last.after}: it was moved "
        "outside FastTrack (MLflow's UI or API), which leaves no event"
    )


def encode(event: AliasEvent) -> str:
    """The tag value of ``event``: compact JSON of at most :data:`MAX_VALUE` characters (the longer of its reason
    and its data source shortened when needed)."""
    text = _json(event)
    while len(text) > MAX_VALUE:
        excess = len(text) - MAX_VALUE + 1  # + 1 for the ellipsis
        comparison = event.comparison
        data = comparison.data if comparison is not None and comparison.data else ""
        if comparison is not None and len(data) > max(len(event.reason), 1):
            event = replace(event, comparison=replace(comparison, data=data[: max(0, len(data) - excess)] + "…"))
        elif len(event.reason) > 1:
            event = replace(event, reason=event.reason[: max(0, len(event.reason) - excess)] + "…")
        else:  # pragma: no cover - the other fields are short by construction (versions, names, one actor)
            raise ConfigError(f"the alias event is longer than MLflow keeps ({len(text)} > {MAX_VALUE} characters)")
        text = _json(event)
    return text


def _json(event: AliasEvent) -> str:
    # Characters, not bytes, are what the VARCHAR limit counts: non-ASCII text stays as it is.
    return json.dumps(event.fields(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode(id: str, value: str) -> AliasEvent | None:
    """The event stored under ``id`` (its key without the prefix), or ``None`` when the value is not one."""
    try:
        data = json.loads(value)
        at = datetime.fromisoformat(data["at"])
        comparison = None
        if isinstance(data.get("comparison"), dict):
            c = data["comparison"]
            comparison = Comparison(
                metric=str(c["metric"]),
                challenger=str(c["challenger"]),
                challenger_score=_number(c.get("challenger_score")),
                champion=str(c["champion"]),
                champion_score=_number(c.get("champion_score")),
                margin=float(c.get("margin") or 0.0),
                data=c.get("data"),
                rows=int(c.get("rows") or 0),
            )
        return AliasEvent(
            id=id,
            alias=str(data["alias"]),
            at=at if at.tzinfo else at.replace(tzinfo=UTC),
            before=_version(data.get("before")),
            after=_version(data.get("after")),
            decision=str(data["decision"]),
            by=str(data.get("by") or "?"),
            host=str(data.get("host") or ""),
            reason=str(data.get("reason") or ""),
            comparison=comparison,
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: a score that is not a number is recorded as missing."""
    return value if value is not None and math.isfinite(value) else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _version(value: object) -> str | None:
    return None if value is None else str(value)


# -------------------------------------------------------------------------------------------------- writing
def record_move(
    mlflow_client: MlflowClient,
    name: str,
    alias: str,
    *,
    expected: str | None,
    to: str | None,
    decision: str,
    reason: str,
    by: str,
    comparison: Comparison | None = None,
    then: Callable[[MlflowClient], None] | None = None,
) -> AliasEvent:
    """Point ``alias`` of ``name`` at version ``to`` (``None``: leave it) and record the event, if the alias still
    points at ``expected`` (``None``: at nothing), under the alias's lock.

    ``then`` runs under the lock after the event is written (promotion writes its version tags there). Raises
    :class:`~fasttrack.errors.AliasMovedError`, moving and writing nothing, when the alias points elsewhere: the
    decision was made against a holder that is gone, and the caller makes it again. MLflow's errors propagate
    (the caller wraps them in :func:`~fasttrack.registry.errors.registry_errors`).
    """
    host = socket.gethostname()
    with AliasLock(mlflow_client, name, alias, by=f"{by} on {host}") as lock:
        model = mlflow_client.get_registered_model(name)
        current = model.aliases.get(alias)
        holder = str(current) if current is not None else None
        if holder != expected:
            was = f"version {expected}" if expected is not None else "no version"
            now = f"version {holder}" if holder is not None else "no version"
            raise AliasMovedError(
                f"{name}@{alias} moved while this decision was made: it pointed at {was}, now at {now}",
                holder=holder,
            )
        after = holder if to is None else to
        now_at = datetime.now(UTC)
        event = AliasEvent(
            id=_event_id(now_at, _last_id(name, dict(model.tags), alias)),
            alias=alias,
            at=now_at,
            before=holder,
            after=after,
            decision=decision,
            by=by,
            host=host,
            reason=reason,
            comparison=comparison,
        )
        value = encode(event)
        lock.check()
        if after is not None and after != holder:
            mlflow_client.set_registered_model_alias(name, alias, after)
        mlflow_client.set_registered_model_tag(name, HISTORY_PREFIX + event.id, value)
        if then is not None:
            then(mlflow_client)
        return event


def _last_id(name: str, tags: Mapping[str, str], alias: str) -> str | None:
    """The id of the latest readable event of ``alias`` among ``tags``."""
    last = history_of(name, {}, tags, alias).last(alias)
    return last.id if last is not None else None


def _event_id(at: datetime, after: str | None) -> str:
    """A new event id: ``at`` in a fixed-width sortable form, later than the id ``after`` (a machine whose clock is
    behind the previous writer's still sorts after it), and a random part no other writer picks."""
    stamp = at
    if after is not None:
        try:
            previous = datetime.strptime(after[:_TIME_WIDTH], _TIME).replace(tzinfo=UTC)
        except ValueError:
            previous = None
        if previous is not None and previous >= stamp:
            stamp = previous + timedelta(microseconds=1)
    return f"{stamp.strftime(_TIME)}-{secrets.token_hex(4)}"


# ------------------------------------------------------------------------------------------------- rollback
def previous_holder(history: AliasHistory, alias: str) -> str:
    """The version ``alias`` pointed at before its last recorded move: where a rollback takes it.

    Raises :class:`~fasttrack.errors.AliasError` when there is none to go back to: the alias is not set, has no
    recorded move, was moved outside FastTrack since, or was first set by its last move.
    """
    name, holder = history.name, history.holders.get(alias)
    if holder is None:
        raise AliasError(f"{name}@{alias} is not set: nothing to roll back (give --to VERSION to set it)")
    moves = [e for e in history.events if e.alias == alias and e.moved]
    if not moves:
        raise AliasError(
            f"no recorded move of {name}@{alias} (version {holder}): nothing to roll back to; give --to VERSION"
        )
    # Against the last *move*: a decision recorded since that kept the alias (a rejected promotion) says where it
    # pointed then, which a move outside FastTrack may already have changed.
    last = moves[-1]
    if last.after != holder:
        raise AliasError(
            f"{name}@{alias} was moved outside FastTrack to version {holder} (its last recorded move set version "
            f"{last.after}), so its previous version is unknown: give --to VERSION"
        )
    before = last.before
    if before is None:
        raise AliasError(
            f"version {holder} took {name}@{alias} when no version held it: there is no previous version to roll "
            "back to; give --to VERSION"
        )
    return before


def rollback(settings: Settings, name: str, alias: str, to: str | None = None) -> AliasEvent | None:
    """Move ``alias`` of ``name`` back to its previous holder (:func:`previous_holder`), or to version ``to``,
    recorded as a ``rollback`` event through :func:`record_move`.

    Returns ``None``, recording nothing, when that version already holds the alias. Planned again against the new
    holder when the alias moves meanwhile (up to :data:`ATTEMPTS` times). Raises ``ModelNotFoundError`` for a
    model or target version that does not exist (or was deleted), ``AliasError`` when there is nothing to roll back
    to.
    """
    if to is not None and not to.isdigit():
        raise ConfigError(f"--to takes a version number, not {to!r}")
    by = actor(settings)
    with registry_errors(f"rolling back {name}@{alias}"):
        mlflow_client = client(settings)
        for _ in range(ATTEMPTS):
            model = mlflow_client.get_registered_model(name)
            history = history_of(name, dict(model.aliases), dict(model.tags), alias)
            holder = history.holders.get(alias)
            target = to if to is not None else previous_holder(history, alias)
            _check_exists(mlflow_client, name, target, given=to is not None, alias=alias)
            if target == holder:
                return None
            how = "to the version given" if to is not None else "to the version it held before its last move"
            was = f"version {holder}" if holder is not None else "no version"
            try:
                return record_move(
                    mlflow_client,
                    name,
                    alias,
                    expected=holder,
                    to=target,
                    decision="rollback",
                    reason=f"rolled back from {was} to version {target} ({how})",
                    by=by,
                )
            except AliasMovedError:
                continue  # planned against a holder that is gone: plan again
        raise AliasError(f"{name}@{alias} kept moving during the rollback ({ATTEMPTS} attempts): try again")


def _check_exists(mlflow_client: MlflowClient, name: str, version: str, *, given: bool, alias: str) -> None:
    try:
        mlflow_client.get_model_version(name, version)
    except Exception as exc:
        if error_code(exc) not in NOT_FOUND:
            raise
        what = "" if given else f", which held @{alias} before its last move,"
        raise ModelNotFoundError(f"version {version} of {name}{what} does not exist (deleted?)") from None
