"""Alias history against a real embedded MLflow store: events recorded with each move, read back, and rollback."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from fasttrack.config import Settings, get_settings
from fasttrack.errors import AliasError, AliasMovedError, ConfigError, ModelNotFoundError
from fasttrack.registry import history, runs
from fasttrack.registry.history import (
    HISTORY_PREFIX,
    MAX_VALUE,
    AliasEvent,
    Comparison,
    actor,
    decode,
    encode,
    read_history,
    record_move,
    rollback,
)
from fasttrack.registry.store import client
from fasttrack.training.train import TrainResult


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, good_result: TrainResult) -> Iterator[Settings]:
    """An embedded store holding ``toy`` version 1, registered the way ``fasttrack train`` registers."""
    with pytest.MonkeyPatch.context() as patch:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "FASTTRACK_TRACKING_URI", "FASTTRACK_MODEL"):
            patch.delenv(var, raising=False)
        settings = get_settings(home=tmp_path_factory.mktemp("history") / "home", actor="pytest")
        runs.log_training(good_result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)
        yield settings


def new_model(settings: Settings, versions: int = 3) -> str:
    """A registered model of its own with ``versions`` versions (copies of ``toy`` 1) and no alias."""
    mlflow_client = client(settings)
    source = mlflow_client.get_model_version("toy", "1")
    name = f"m-{uuid.uuid4().hex[:8]}"
    mlflow_client.create_registered_model(name)
    for _ in range(versions):
        mlflow_client.create_model_version(name, source=source.source, run_id=source.run_id, model_id=source.model_id)
    return name


def move(settings: Settings, name: str, expected: str | None, to: str | None, decision: str = "promoted") -> AliasEvent:
    return record_move(
        client(settings), name, "champion", expected=expected, to=to, decision=decision, reason="because", by="pytest"
    )


def holder(settings: Settings, name: str, alias: str = "champion") -> str | None:
    found = client(settings).get_registered_model(name).aliases.get(alias)
    return None if found is None else str(found)


# ------------------------------------------------------------------------------------------------- encoding
def event(**changes: object) -> AliasEvent:
    values: dict[str, object] = {
        "id": "20261203T100000.000000Z-0a1b2c3d",
        "alias": "champion",
        "at": datetime(2026, 12, 3, 10, 0, tzinfo=UTC),
        "before": "1",
        "after": "2",
        "decision": "promoted",
        "by": "airflow:fasttrack_retrain/manual__2026-12-03",
        "host": "worker-1",
        "reason": "the challenger is better by 0.0100",
        "comparison": Comparison("roc_auc", "2", 0.91, "1", 0.90, margin=0.005, data="holdout of version 2", rows=60),
    }
    values.update(changes)
    return AliasEvent(**values)  # type: ignore[arg-type]


def test_an_event_survives_its_tag() -> None:
    original = event()
    assert decode(original.id, encode(original)) == original
    kept = event(after="1", decision="rejected", comparison=None)
    assert decode(kept.id, encode(kept)) == kept and not kept.moved


def test_an_event_fits_in_what_mlflow_stores() -> None:
    # registered_model_tags.value is VARCHAR(5000) in every MLflow SQL store, whatever the validator allows.
    long = event(reason="é" * 20_000)  # characters, not bytes, are what the column counts
    text = encode(long)
    assert len(text) == MAX_VALUE
    back = decode(long.id, text)
    assert back is not None and back.reason.endswith("…") and back.reason.startswith("éé")
    assert back.comparison == long.comparison
    query = event(comparison=Comparison("roc_auc", "2", 0.9, "1", 0.8, data="SELECT " * 2000))
    back = decode(query.id, encode(query))
    assert back is not None and back.reason == query.reason and len(encode(query)) <= MAX_VALUE
    assert back.comparison is not None and back.comparison.data is not None and back.comparison.data.endswith("…")


def test_scores_that_are_not_numbers_are_recorded_as_missing() -> None:
    odd = event(comparison=Comparison("roc_auc", "2", float("nan"), "1", float("inf")))
    back = decode(odd.id, encode(odd))
    assert back is not None and back.comparison is not None
    assert (back.comparison.challenger_score, back.comparison.champion_score) == (None, None)


@pytest.mark.parametrize("value", ["", "not json", "[]", '{"alias": "champion"}', '{"at": "yesterday"}'])
def test_a_value_that_is_not_an_event_is_not_read(value: str) -> None:
    assert decode("x", value) is None


def test_who_moved_it() -> None:
    airflow = {"AIRFLOW_CTX_DAG_ID": "fasttrack_retrain", "AIRFLOW_CTX_DAG_RUN_ID": "scheduled__2026-12-03"}
    assert actor(Settings(actor="release-bot"), airflow) == "release-bot"
    assert actor(Settings(), airflow) == "airflow:fasttrack_retrain/scheduled__2026-12-03"
    assert actor(Settings(), {"AIRFLOW_CTX_DAG_ID": "fasttrack_retrain"}) == "airflow:fasttrack_retrain"
    import getpass

    assert actor(Settings(), {}) == getpass.getuser()


def test_event_ids_sort_after_the_previous_one_whatever_the_clock() -> None:
    ahead = "20991231T235959.999999Z-ffffffff"  # written by a machine whose clock is far ahead
    later = history._event_id(datetime.now(UTC), ahead)
    assert later > ahead and later.startswith("21000101T000000.000000Z-")
    assert history._event_id(datetime.now(UTC), None) > "20261203"


# ------------------------------------------------------------------------------------------- moves recorded
def test_a_move_is_made_and_recorded(store: Settings) -> None:
    name = new_model(store)
    first = move(store, name, None, "1", decision="no-champion")
    second = move(store, name, "1", "2")
    kept = move(store, name, "2", None, decision="rejected")
    assert holder(store, name) == "2"
    found = read_history(store, name)
    assert found.events == [first, second, kept]
    assert [(e.before, e.after, e.moved) for e in found.events] == [
        (None, "1", True),
        ("1", "2", True),
        ("2", "2", False),
    ]
    assert found.holders == {"champion": "2"} and found.notes == []
    assert all(e.by == "pytest" and e.host for e in found.events)


def test_a_move_against_a_holder_that_is_gone_is_refused(store: Settings) -> None:
    name = new_model(store)
    move(store, name, None, "1")
    with pytest.raises(AliasMovedError, match="pointed at no version, now at version 1") as refused:
        move(store, name, None, "2")
    assert refused.value.holder == "1"
    with pytest.raises(AliasMovedError, match="pointed at version 3, now at version 1"):
        move(store, name, "3", None, decision="rejected")
    assert holder(store, name) == "1"
    assert len(read_history(store, name).events) == 1  # nothing written by the refused ones


def test_concurrent_writers_lose_no_event(store: Settings) -> None:
    name = new_model(store)
    move(store, name, None, "1")
    errors: list[BaseException] = []

    def decide(version: str) -> None:
        # Each decided against version 1; whoever moves second finds it gone and must decide again.
        try:
            move(store, name, "1", version)
        except AliasMovedError:
            try:
                move(store, name, holder(store, name), None, decision="rejected")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

    threads = [threading.Thread(target=decide, args=(v,)) for v in ("2", "3")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    events = read_history(store, name).events
    assert len(events) == 3
    winner, loser = events[1], events[2]
    assert winner.before == "1" and winner.after in ("2", "3")
    assert (loser.before, loser.after, loser.decision) == (winner.after, winner.after, "rejected")
    assert holder(store, name) == winner.after


def test_moves_outside_fasttrack_are_noted(store: Settings) -> None:
    name = new_model(store)
    client(store).set_registered_model_alias(name, "staging", "3")
    found = read_history(store, name)
    assert found.events == [] and found.holders == {"staging": "3"}
    assert found.notes == [
        "version 3 holds @staging, but no move of it is recorded: it was set before FastTrack recorded alias "
        "history, or outside FastTrack (MLflow's UI or API), which leaves no event"
    ]
    move(store, name, None, "1")
    client(store).set_registered_model_alias(name, "champion", "2")  # someone in MLflow's UI
    notes = read_history(store, name, "champion").notes
    assert notes == [
        "@champion points at version 2, but its last recorded move set version 1: it was moved outside FastTrack "
        "(MLflow's UI or API), which leaves no event"
    ]
    client(store).set_registered_model_tag(name, f"{HISTORY_PREFIX}20261203T000000.000000Z-00000000", "{broken")
    assert "1 fasttrack.alias_history.* tag(s) could not be read" in read_history(store, name).notes[-1]


def test_the_first_registered_version_takes_champion_as_a_recorded_move(store: Settings) -> None:
    first = read_history(store, "toy").events
    assert [(e.before, e.after, e.decision, e.by) for e in first] == [(None, "1", "registered", "pytest")]


def test_a_missing_model_has_no_history(store: Settings) -> None:
    with pytest.raises(ModelNotFoundError, match="reading the alias history of nothing"):
        read_history(store, "nothing")


# ------------------------------------------------------------------------------------------------- rollback
def test_rollback_goes_back_and_a_second_one_undoes_it(store: Settings) -> None:
    name = new_model(store)
    move(store, name, None, "1", decision="no-champion")
    move(store, name, "1", "2")
    move(store, name, "2", None, decision="rejected")  # a decision that kept the alias is not a move
    back = rollback(store, name, "champion")
    assert back is not None and (back.before, back.after, back.decision, back.by) == ("2", "1", "rollback", "pytest")
    assert holder(store, name) == "1"
    again = rollback(store, name, "champion")
    assert again is not None and (again.before, again.after) == ("1", "2")
    to = rollback(store, name, "champion", to="3")
    assert to is not None and (to.before, to.after) == ("2", "3") and "to the version given" in to.reason
    assert rollback(store, name, "champion", to="3") is None  # already there: nothing recorded
    chain = read_history(store, name).events
    assert all(a.after == b.before for a, b in itertools.pairwise(chain))


def test_rollback_refuses_when_there_is_nothing_to_go_back_to(store: Settings) -> None:
    name = new_model(store)
    with pytest.raises(AliasError, match=rf"{name}@champion is not set: nothing to roll back"):
        rollback(store, name, "champion")
    client(store).set_registered_model_alias(name, "champion", "1")
    with pytest.raises(AliasError, match=r"no recorded move of .*: nothing to roll back to; give --to VERSION"):
        rollback(store, name, "champion")
    client(store).delete_registered_model_alias(name, "champion")
    move(store, name, None, "1")
    with pytest.raises(AliasError, match=r"took .*@champion when no version held it"):
        rollback(store, name, "champion")
    move(store, name, "1", "2")
    client(store).set_registered_model_alias(name, "champion", "3")  # moved in MLflow's UI
    with pytest.raises(AliasError, match=r"moved outside FastTrack to version 3 .*set version 2"):
        rollback(store, name, "champion")
    assert holder(store, name) == "3"
    # Moved back outside FastTrack, then a promotion against that holder kept it: the kept decision does not make
    # the outside move a recorded one.
    client(store).set_registered_model_alias(name, "champion", "1")
    move(store, name, "1", None, decision="rejected")
    with pytest.raises(AliasError, match=r"moved outside FastTrack to version 1 .*set version 2"):
        rollback(store, name, "champion")
    assert holder(store, name) == "1"


def test_rollback_to_a_version_that_does_not_exist(store: Settings) -> None:
    name = new_model(store)
    move(store, name, None, "1")
    move(store, name, "1", "2")
    with pytest.raises(ModelNotFoundError, match=f"version 9 of {name} does not exist"):
        rollback(store, name, "champion", to="9")
    with pytest.raises(ConfigError, match="--to takes a version number"):
        rollback(store, name, "champion", to="champion")
    client(store).delete_model_version(name, "1")
    with pytest.raises(ModelNotFoundError, match=f"version 1 of {name}, which held @champion before its last move,"):
        rollback(store, name, "champion")
    assert holder(store, name) == "2"
    with pytest.raises(ModelNotFoundError):
        rollback(store, "nothing", "champion")
