"""The model manager: background first load, checked atomic swaps, refused broken versions, registry polling."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fasttrack.config import Settings
from fasttrack.errors import FastTrackError
from fasttrack.serving.manager import ModelManager, follows_registry
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor
from support import register_broken, register_copy


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@contextmanager
def running(settings: Settings, **kwargs: object) -> Iterator[ModelManager]:
    manager = ModelManager(settings, ServerMetrics(), **kwargs)  # type: ignore[arg-type]
    manager.start()
    try:
        yield manager
    finally:
        manager.stop()


def reloads(manager: ModelManager, name: str, version: str, outcome: str) -> float:
    found = manager.metrics.registry.get_sample_value(
        "fasttrack_model_reloads_total", {"model": name, "version": version, "outcome": outcome}
    )
    return found or 0.0


@pytest.mark.parametrize(
    ("uri", "follows"),
    [
        ("models:/sample@champion", True),
        ("models:/sample", True),
        ("models:/sample/3", False),
        ("runs:/abc/model", False),
        ("/models/sample", False),
    ],
)
def test_which_uris_are_followed(uri: str, follows: bool) -> None:
    assert follows_registry(uri) is follows


def test_first_load_happens_in_the_background(settings: Settings) -> None:
    with running(settings.model_copy(update={"model": "models:/sample@champion"})) as manager:
        assert manager.wait_ready(60)
        current = manager.current
        assert current is not None
        assert (current.name, current.version, current.source.alias) == ("sample", "1", "champion")
        assert manager.reload().outcome == "unchanged"
        assert manager.metrics.registry.get_sample_value("fasttrack_model_ready") == 1


def test_a_new_version_is_checked_and_swapped_in(settings: Settings, model_home: Path) -> None:
    name = unique("swap")
    register_copy(model_home, name, alias="champion")
    with running(settings.model_copy(update={"model": f"models:/{name}@champion"})) as manager:
        assert manager.wait_ready(60)
        old = manager.current
        register_copy(model_home, name, alias="champion")
        result = manager.reload()
        assert (result.outcome, result.version, result.candidate) == ("reloaded", "2", "2")
        assert manager.current is not old
        assert old is not None and old.version == "1"  # requests holding the old predictor finish on it
        assert reloads(manager, name, "2", "success") == 1
        info = manager.metrics.registry.get_sample_value
        assert info("fasttrack_model_info", {"model": name, "version": "2"}) == 1
        assert info("fasttrack_model_info", {"model": name, "version": "1"}) == 0


@pytest.mark.parametrize("how", ["pickle", "check"])
def test_a_broken_version_is_refused_and_the_old_one_keeps_serving(
    settings: Settings, model_home: Path, tmp_path: Path, how: str
) -> None:
    name = unique(f"broken-{how}")
    register_copy(model_home, name, alias="champion")
    with running(settings.model_copy(update={"model": f"models:/{name}@champion"})) as manager:
        assert manager.wait_ready(60)
        bad = register_broken(model_home, name, tmp_path / "broken", how=how, alias="champion")
        result = manager.reload()
        assert result.outcome == "refused"
        assert result.version == "1" and result.candidate == bad
        assert result.error
        current = manager.current
        assert current is not None and current.version == "1"
        assert current.predict([{"feature_1": 5.3, "feature_2": 2.1}]).values == ["positive"]
        # counted under the version that keeps serving, whose counter exists at 0 from its swap (so that
        # increase() sees the first failure); the refused version is in the result and the log
        assert reloads(manager, name, "1", "failure") == 1
        assert (
            manager.metrics.registry.get_sample_value(
                "fasttrack_model_reloads_total", {"model": name, "version": bad, "outcome": "failure"}
            )
            is None
        )
        # polls do not retry (nor count) the same broken version; a forced check does
        assert manager.reload().error == "refused before"
        assert reloads(manager, name, "1", "failure") == 1
        assert manager.reload(force=True).outcome == "refused"
        assert reloads(manager, name, "1", "failure") == 2


def test_polling_follows_the_alias(settings: Settings, model_home: Path) -> None:
    name = unique("poll")
    register_copy(model_home, name, alias="champion")
    polling = settings.model_copy(update={"model": f"models:/{name}@champion", "reload_interval": 0.2})
    with running(polling) as manager:
        assert manager.wait_ready(60)
        register_copy(model_home, name, alias="champion")
        assert wait_for(lambda: manager.current is not None and manager.current.version == "2")


def test_a_pinned_version_is_not_polled(settings: Settings) -> None:
    with running(settings.model_copy(update={"model": "models:/sample/1", "reload_interval": 0.1})) as manager:
        assert manager.wait_ready(60)
        assert not manager.follows
        assert manager.reload().outcome == "not_followed"
        assert manager.reload(force=True).outcome == "unchanged"


def test_a_failed_first_load_is_fatal_when_asked(settings: Settings) -> None:
    failures: list[FastTrackError] = []
    with running(
        settings.model_copy(update={"model": "models:/no-such-model@champion"}), on_fatal=failures.append
    ) as m:
        assert not m.wait_ready(60)
        assert wait_for(lambda: bool(failures))
        assert "no-such-model" in str(failures[0])
        assert m.load_error is not None and m.current is None


def test_without_on_fatal_the_first_load_is_retried(settings: Settings, model_home: Path) -> None:
    name = unique("late")
    with running(settings.model_copy(update={"model": f"models:/{name}", "reload_interval": 0.2})) as manager:
        assert wait_for(lambda: manager.load_error is not None)
        assert not manager.ready
        register_copy(model_home, name)
        assert wait_for(lambda: manager.ready)
        assert manager.load_error is None


def test_no_prediction_fails_while_versions_are_swapped(settings: Settings, model_home: Path) -> None:
    name = unique("busy")
    register_copy(model_home, name, alias="champion")
    errors: list[BaseException] = []
    seen: set[str] = set()
    stop = threading.Event()
    with running(settings.model_copy(update={"model": f"models:/{name}@champion"})) as manager:
        assert manager.wait_ready(60)

        def client() -> None:
            while not stop.is_set():
                predictor = manager.current
                assert predictor is not None
                try:
                    assert predictor.predict([{"feature_1": 5.3, "feature_2": 2.1}]).values == ["positive"]
                    seen.add(predictor.version)
                except BaseException as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=client) for _ in range(3)]
        for thread in threads:
            thread.start()
        try:
            for _ in range(2):
                register_copy(model_home, name, alias="champion")
                assert manager.reload().outcome == "reloaded"
        finally:
            time.sleep(0.2)
            stop.set()
            for thread in threads:
                thread.join(10)
    assert not errors
    assert {"1", "3"} <= seen


def test_every_swap_is_followed_by_the_after_swap_hook(settings: Settings, model_home: Path) -> None:
    name = unique("hook")
    register_copy(model_home, name, alias="champion")
    calls: list[str | None] = []
    model = settings.model_copy(update={"model": f"models:/{name}@champion"})

    def after_swap() -> None:
        calls.append(manager.current.version if manager.current else None)

    with running(model, after_swap=after_swap) as manager:
        assert manager.wait_ready(60)
        assert wait_for(lambda: calls == ["1"])
        register_copy(model_home, name, alias="champion")
        assert manager.reload().outcome == "reloaded"
        assert calls == ["1", "2"]  # called once the new version serves
        assert manager.reload().outcome == "unchanged"
        assert calls == ["1", "2"]


def test_the_inference_log_holds_every_prediction_and_label(
    serve_app: Callable[..., Any], settings: Settings, mixed: Predictor, tmp_path: Path
) -> None:
    import pyarrow.dataset as ds

    root = tmp_path / "log"
    logged = settings.model_copy(update={"inference_log": str(root)})
    red = {"amount": None, "colour": "red", "member": False}
    purple = {"amount": 20.5, "colour": "purple", "member": True}
    with serve_app(logged, mixed) as (client, metrics):
        assert client.app.state.manager.current.track_probabilities  # a classifier's probabilities are logged
        single = client.post("/predict?ids=true&probabilities=true", json=purple).json()
        batch = client.post("/predict?ids=true", json=[red, purple]).json()
        invocations = client.post("/invocations", json={"dataframe_records": [red]})
        answers = {single["id"]: (purple, single["prediction"], single["probabilities"])}
        rows = zip(batch["ids"], [red, purple], batch["predictions"], strict=True)
        answers |= {pid: (record, label, None) for pid, record, label in rows}
        answers[invocations.headers["X-Prediction-Id"] + "-0"] = (red, invocations.json()["predictions"][0], None)
        labels = [
            {"id": single["id"], "label": "yes"},
            {"id": batch["ids"][0], "label": "maybe"},
            {"id": "nope", "label": "no"},
        ]
        assert client.post("/feedback", json=labels).json()["counts"]["invalid"] == 1
    # The app has shut down: the log was closed, everything written.
    logged = ds.dataset(root / "predictions", format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted(row["prediction_id"] for row in logged) == sorted(answers)
    for row in logged:
        record, label, probabilities = answers[row["prediction_id"]]
        assert (row["model"], row["version"], row["prediction"]) == ("mixed", "1", label)
        assert row["input.amount"] == record["amount"] and row["input.colour"] == record["colour"]
        assert row["input.member"] == float(record["member"])
        assert abs(row["proba.no"] + row["proba.yes"] - 1) < 1e-9
        if probabilities is not None:
            assert (row["proba.no"], row["proba.yes"]) == (probabilities["no"], probabilities["yes"])
    feedback = ds.dataset(root / "feedback", format="parquet", partitioning="hive").to_table().to_pylist()
    assert {(r["prediction_id"], r["label"], r["outcome"]) for r in feedback} == {
        ("nope", "no", "unknown"),
        (single["id"], "yes", "matched"),
    }
    written = metrics.registry.get_sample_value("fasttrack_inference_log_written_rows_total", {"table": "predictions"})
    assert written == 4
