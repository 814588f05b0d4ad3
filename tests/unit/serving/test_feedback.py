"""Live accuracy from delayed labels: predictions kept by id, joined with true labels, bad ids answered per id."""

from __future__ import annotations

import math
import re
import threading

import pytest

from fasttrack.serving.feedback import CLIENT, LIMITS, OUTCOMES, FeedbackWindow


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def window(task: str = "classification", **options: object) -> FeedbackWindow:
    return FeedbackWindow(task, min_samples=1, **options)  # type: ignore[arg-type]


def test_ids_are_random_hex_and_unique() -> None:
    ids = {FeedbackWindow.new_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


@pytest.mark.parametrize("count", [0, 1, 7, 500])
def test_ids_made_together_are_random_hex_and_unique(count: int) -> None:
    ids = [i for _ in range(20) for i in FeedbackWindow.new_ids(count)]
    assert len(ids) == len(set(ids)) == 20 * count
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_labels_join_their_predictions_into_live_accuracy() -> None:
    feedback = window()
    feedback.record_many([("a", "yes"), ("b", "no"), ("c", "yes"), ("d", "no")])
    result = feedback.join([("a", "yes"), ("b", "no"), ("c", "no"), ("d", "no")])
    assert result.matched == 4
    assert [item.outcome for item in result.items] == ["matched"] * 4
    assert (result.items[2].predicted, result.items[2].actual) == ("yes", "no")
    metrics = feedback.metrics()
    assert (metrics.samples, metrics.accuracy, metrics.rmse, metrics.mae) == (4, 0.75, None, None)


def test_class_labels_compare_as_text() -> None:
    feedback = window()
    feedback.record_many([("a", 1), ("b", True), ("c", 0.0)])
    result = feedback.join([("a", "1"), ("b", "true"), ("c", 0)])
    assert result.matched == 3
    assert feedback.metrics().accuracy == 1.0


def test_regression_gives_rmse_and_mae() -> None:
    feedback = window("regression")
    feedback.record_many([("a", 10.0), ("b", 20.0), ("c", 30.0)])
    assert feedback.join([("a", 13.0), ("b", 16), ("c", 30.0)]).matched == 3
    metrics = feedback.metrics()
    assert metrics.accuracy is None
    assert metrics.rmse == pytest.approx(math.sqrt((9 + 16 + 0) / 3))
    assert metrics.mae == pytest.approx(7 / 3)


def test_unknown_ids_are_reported_not_raised() -> None:
    feedback = window()
    feedback.record("a", "yes")
    result = feedback.join([("nope", "yes"), ("a", "yes")])
    assert result.unknown_ids == ["nope"]
    assert result.matched == 1
    (unknown, _) = result.items
    assert unknown.reason is not None
    assert "unknown id" in unknown.reason
    assert result.counts == {"matched": 1, "unknown": 1, "expired": 0, "duplicate": 0, "invalid": 0}
    assert tuple(result.counts) == OUTCOMES


def test_a_label_counts_once() -> None:
    feedback = window()
    feedback.record("a", "yes")
    first = feedback.join([("a", "yes"), ("a", "no")])
    assert [item.outcome for item in first.items] == ["matched", "duplicate"]
    assert feedback.join([("a", "no")]).duplicate_ids == ["a"]
    assert feedback.metrics().samples == 1
    assert feedback.metrics().accuracy == 1.0


def test_the_oldest_predictions_leave_a_full_window() -> None:
    feedback = window(capacity=3)
    feedback.record_many([(str(i), "yes") for i in range(5)])
    assert len(feedback) == 3
    result = feedback.join([(str(i), "yes") for i in range(5)])
    assert result.unknown_ids == ["0", "1"]
    assert result.matched == 3
    assert "last 3 predictions" in (result.items[0].reason or "")


def test_predictions_expire_after_the_ttl() -> None:
    clock = Clock()
    feedback = window(ttl=60, clock=clock)
    feedback.record_many([("old", "yes"), ("older", "no")])
    clock.now += 30
    feedback.record("young", "yes")
    clock.now += 31  # "old" and "older" are 61 s old, "young" 31 s
    result = feedback.join([("old", "yes"), ("young", "yes")])
    assert result.expired_ids == ["old"]
    assert "older than 60 seconds" in (result.items[0].reason or "")
    assert result.matched == 1
    # Recording sweeps what has expired: "older" is gone, so it is unknown now.
    feedback.record("new", "no")
    assert len(feedback) == 2
    assert feedback.join([("older", "no")]).unknown_ids == ["older"]


def test_invalid_labels_are_reported_and_leave_the_prediction_waiting() -> None:
    feedback = window(labels=["yes", "no"])
    feedback.record_many([("a", "yes"), ("b", "no")])
    result = feedback.join([("a", "maybe"), ("b", None)])
    assert result.invalid_ids == ["a", "b"]
    assert "not one of the model's labels" in (result.items[0].reason or "")
    assert feedback.metrics().samples == 0
    assert feedback.join([("a", "yes")]).matched == 1


@pytest.mark.parametrize("actual", ["12", None, True, float("nan"), float("inf")])
def test_regression_needs_a_finite_number(actual: object) -> None:
    feedback = window("regression")
    feedback.record("a", 10.0)
    (item,) = feedback.join([("a", actual)]).items
    assert item.outcome == "invalid"
    assert "finite number" in (item.reason or "")


def test_metrics_wait_for_enough_pairs_and_cover_the_last_ones() -> None:
    feedback = FeedbackWindow("classification", metrics_window=4, min_samples=3, client_share=1)  # one client: all
    feedback.record_many([(str(i), "yes") for i in range(6)])
    feedback.join([("0", "no"), ("1", "no")])
    assert feedback.metrics().accuracy is None
    assert feedback.metrics().samples == 2
    feedback.join([("2", "yes")])
    assert feedback.metrics().accuracy == pytest.approx(1 / 3)
    feedback.join([("3", "yes"), ("4", "yes"), ("5", "yes")])  # the two wrong ones leave the last 4
    assert feedback.metrics().samples == 4
    assert feedback.metrics().accuracy == 1.0


@pytest.mark.parametrize(
    "options",
    [{"capacity": 0}, {"ttl": 0}, {"min_samples": 0}, {"metrics_window": 10, "min_samples": 11}],
)
def test_settings_are_checked(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FeedbackWindow("classification", **options)  # type: ignore[arg-type]


def test_concurrent_records_and_joins() -> None:
    feedback = FeedbackWindow("classification", capacity=100_000, min_samples=1)
    ids = [[FeedbackWindow.new_id() for _ in range(2000)] for _ in range(4)]
    errors: list[BaseException] = []

    def predict_then_label(batch: list[str]) -> None:
        try:
            for i in range(0, len(batch), 100):
                chunk = batch[i : i + 100]
                feedback.record_many([(pid, "yes") for pid in chunk])
                assert feedback.join([(pid, "yes") for pid in chunk]).matched == len(chunk)
                feedback.metrics()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=predict_then_label, args=(batch,)) for batch in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(feedback) == 8000
    assert feedback.metrics().accuracy == 1.0


# ------------------------------------------------------------------------------- bounds per client (issue 17)
def test_a_flood_of_predictions_does_not_push_out_another_clients_pending_ones() -> None:
    limited: list[tuple[str, int]] = []
    feedback = FeedbackWindow(
        "classification", min_samples=1, client_capacity=1000, on_limit=lambda what, n: limited.append((what, n))
    )
    feedback.record("real", "yes", client="10.0.0.1")
    feedback.record_many([(f"flood-{i}", "no") for i in range(10_000)], client="10.0.0.2")  # one 10,000-row batch
    assert feedback.pending("10.0.0.1") == 1 and feedback.pending("10.0.0.2") == 1000
    assert limited == [("pending", 9000)]
    assert feedback.join([("real", "yes")], client="10.0.0.1").matched == 1
    # The flooding client keeps its newest predictions only: its oldest are unknown.
    outcomes = feedback.join([("flood-0", "no"), ("flood-9999", "no")], client="10.0.0.2").counts
    assert (outcomes["unknown"], outcomes["matched"]) == (1, 1)


def test_the_global_capacity_still_bounds_every_client_together() -> None:
    feedback = FeedbackWindow("classification", capacity=10, client_capacity=8, min_samples=1)
    for client in ("a", "b"):
        feedback.record_many([(f"{client}{i}", "yes") for i in range(8)], client=client)
    assert len(feedback) == 10 and feedback.pending("a") == 2 and feedback.pending("b") == 8


def test_a_joined_prediction_no_longer_counts_as_pending() -> None:
    feedback = FeedbackWindow("classification", client_capacity=2, min_samples=1)
    feedback.record_many([("a", "yes"), ("b", "yes")], client="c")
    feedback.join([("a", "yes")], client="c")
    feedback.record("d", "yes", client="c")  # room made by the label: "b" stays
    assert feedback.pending("c") == 2 and feedback.join([("b", "yes")], client="c").matched == 1


def test_one_client_cannot_decide_the_live_accuracy_alone() -> None:
    """One 1,000-row batch and 1,000 wrong labels for it took live accuracy from 1.0 to 0.0 (issue 17)."""
    limited: list[tuple[str, int]] = []
    feedback = FeedbackWindow(
        "classification", metrics_window=1000, client_share=0.5, on_limit=lambda what, n: limited.append((what, n))
    )
    feedback.record_many([(f"real-{i}", "yes") for i in range(600)], client="labeller")
    feedback.join([(f"real-{i}", "yes") for i in range(600)], client="labeller")
    assert feedback.metrics().accuracy == 1.0
    feedback.record_many([(f"mine-{i}", "yes") for i in range(1000)], client="attacker")
    feedback.join([(f"mine-{i}", "no") for i in range(1000)], client="attacker")
    live = feedback.metrics()
    assert live.samples == 1000 and live.accuracy == 0.5  # the attacker's labels hold half the window, no more
    assert ("share", 500) in limited and ("share", 100) in limited  # the labeller's 600 were capped at 500 too


def test_a_lone_client_keeps_a_live_window_of_its_newest_labels() -> None:
    feedback = FeedbackWindow("classification", metrics_window=10, min_samples=1, client_share=0.5)
    feedback.record_many([(str(i), "yes") for i in range(100)], client="only")
    feedback.join([(str(i), "no" if i < 95 else "yes") for i in range(100)], client="only")
    live = feedback.metrics()
    assert live.samples == 5 and live.accuracy == 1.0  # its last 5 labels, all right
    assert len(feedback._scores) <= 2 * feedback.metrics_window  # replaced labels do not pile up


def test_the_client_comes_from_the_request_context() -> None:
    feedback = FeedbackWindow("classification", client_capacity=1, min_samples=1)
    token = CLIENT.set("team-a")
    try:
        feedback.record_many([("a", "yes"), ("b", "yes")])
    finally:
        CLIENT.reset(token)
    assert feedback.pending("team-a") == 1 and feedback.pending("") == 0


@pytest.mark.parametrize("options", [{"client_capacity": 0}, {"client_share": 0}, {"client_share": 1.5}])
def test_client_bounds_are_checked(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        FeedbackWindow("classification", **options)  # type: ignore[arg-type]


def test_the_limits_are_the_metrics_ones() -> None:
    from fasttrack.serving.metrics import FEEDBACK_LIMITS

    assert FEEDBACK_LIMITS == LIMITS
