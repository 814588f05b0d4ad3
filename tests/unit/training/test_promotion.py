"""Champion/challenger promotion against a real embedded MLflow store: the gate, the scores, the alias moved."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from fasttrack.config import Settings, TrainConfig, get_settings
from fasttrack.data.describe import infer_schema
from fasttrack.errors import AliasError, AliasMovedError, ConfigError, DataError, ModelNotFoundError
from fasttrack.registry import promotion, versions
from fasttrack.registry.history import read_history
from fasttrack.registry.model_folder import load_model_folder
from fasttrack.registry.resolve import resolve_model
from fasttrack.registry.store import client as registry_client
from fasttrack.training import promotion as training_promotion
from fasttrack.training.compare import PairedInterval
from fasttrack.training.promotion import (
    decide,
    parse_margin,
    promote_challenger,
    promote_until_settled,
    resolve_margin,
)
from fasttrack.training.publish import publish
from fasttrack.training.train import TrainResult, train
from unit.registry.conftest import fit, make_frame

NAME = "toy"


def interval(low: float, high: float, metric: str = "roc_auc") -> PairedInterval:
    return PairedInterval(metric, (low + high) / 2, low, high, 0.95, 1000, 500)


@pytest.mark.parametrize(
    ("challenger", "champion", "bounds", "metric", "margin", "force", "decision", "needle"),
    [
        (0.90, 0.80, (0.08, 0.12), "roc_auc", 0.0, False, "promoted", "better by 0.1000 (95% interval +0.0800"),
        (0.80, 0.90, (-0.12, -0.08), "roc_auc", 0.0, False, "rejected", "worse by 0.1000"),
        (0.85, 0.85, (-0.01, 0.01), "roc_auc", 0.0, False, "rejected", "ties"),
        # Better on these rows, but not surely: the interval straddles 0 (or the margin), so the champion stays.
        (0.8508, 0.85, (-0.0009, 0.0025), "roc_auc", 0.0, False, "rejected", "does not clear the margin 0"),
        (0.90, 0.84, (0.04, 0.08), "roc_auc", 0.05, False, "rejected", "does not clear the margin 0.05"),
        (0.90, 0.84, (0.051, 0.07), "roc_auc", 0.05, False, "promoted", "above the margin 0.05"),
        (0.80, 0.90, (-0.12, -0.08), "roc_auc", 0.0, True, "forced", "forced although the challenger is worse"),
        # Lower is better: a smaller error wins, and the margin is a reduction.
        (1.5, 2.0, (0.3, 0.7), "rmse", 0.0, False, "promoted", "lower is better"),
        (2.0, 1.5, (-0.7, -0.3), "rmse", 0.0, False, "rejected", "worse by 0.5000"),
        (1.9, 2.0, (0.01, 0.2), "rmse", 0.5, False, "rejected", "does not clear the margin 0.5"),
        (0.30, 0.50, (0.15, 0.25), "log_loss", 0.1, False, "promoted", "better by 0.2000"),
    ],
)
def test_the_gate_reads_the_intervals_lower_bound(
    challenger: float,
    champion: float,
    bounds: tuple[float, float],
    metric: str,
    margin: float,
    force: bool,
    decision: str,
    needle: str,
) -> None:
    got, reason = decide(interval(*bounds, metric=metric), challenger, champion, margin=margin, force=force)
    assert got == decision
    assert needle in reason


def test_the_margin_cannot_be_negative() -> None:
    with pytest.raises(ConfigError, match="margin"):
        decide(interval(0.05, 0.1), 0.9, 0.8, margin=-0.1)


@pytest.mark.parametrize(("text", "margin"), [("cv", "cv"), (" CV ", "cv"), ("0", 0.0), ("0.0017", 0.0017)])
def test_a_margin_on_the_command_line_is_a_number_or_cv(text: str, margin: object) -> None:
    assert parse_margin(text) == margin


@pytest.mark.parametrize("text", ["-0.1", "nan", "inf", "spread", ""])
def test_a_margin_that_is_neither_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="must be a number >= 0 or 'cv'"):
        parse_margin(text)


def test_the_cv_margin_is_the_challengers_spread_of_the_metric(settings: Settings) -> None:
    metadata = load_model_folder(resolve_model(f"models:/{NAME}/6", settings).path).metadata
    mean, spread = metadata.cv["roc_auc"]
    assert 0 < spread < 1 and 0.5 < mean <= 1
    assert resolve_margin("cv", metadata, "roc_auc") == (
        spread,
        f"margin {spread:.4g} (the challenger's cross-validation spread of roc_auc)",
    )
    assert resolve_margin(0.25, metadata, "roc_auc") == (0.25, "margin 0.25")
    uncrossed = metadata.model_copy(update={"cv": {}})
    assert resolve_margin("cv", uncrossed, "roc_auc")[0] == 0.0

    # Through the gate: the default setting is cv; the decision records the spread as its margin and says so.
    assert settings.promotion_margin == "cv"
    versions.promote(settings, NAME, "3")
    result = promote_challenger(settings, NAME, "6")
    assert result.margin == spread
    assert "the challenger's cross-validation spread of roc_auc" in result.reason
    assert tags(settings, "6")["margin"] == f"{spread:g}"
    # A challenger without cross-validation gets 0, and the reason says why.
    versions.promote(settings, NAME, "6")
    plain = promote_challenger(settings, NAME, "4")
    assert plain.margin == 0.0 and "has no cross-validation spread" in plain.reason


def weak_result(frame: pd.DataFrame) -> TrainResult:
    """A single decision stump on the same features: it beats the baseline, but not the linear model."""
    config = TrainConfig.model_validate(
        {
            "data": "memory://toy.csv",
            "target": "label",
            "name": NAME,
            "model": "random_forest",
            "params": {"n_estimators": 1, "max_depth": 1},
            "cv_folds": 0,
        }
    )
    return train(frame, config, infer_schema(frame, "label", "auto"))


#: Rows of the toy data: its held-out part (about 20 %) is well above the minimum the fixture's settings ask for.
ROWS = 1000


def forest(seed: int, **overrides: object) -> TrainResult:
    """A small random forest on the toy data: two of them differ only by ``seed``."""
    return fit(make_frame(rows=ROWS), model="random_forest", params={"n_estimators": 10}, seed=seed, **overrides)


def cross_validated_forest(seed: int) -> TrainResult:
    """A forest like :func:`forest`, whose training also ran a 3-fold cross-validation (so it has a CV spread)."""
    frame = make_frame(rows=ROWS)
    config = TrainConfig.model_validate(
        {
            "data": "memory://toy.csv",
            "target": "label",
            "name": NAME,
            "model": "random_forest",
            "params": {"n_estimators": 10},
            "seed": seed,
            "cv_folds": 3,
        }
    )
    return train(frame, config, infer_schema(frame, "label", "auto"))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """An embedded store with versions of ``toy``: 1 (strong linear, the champion), 2 (weak), 3 and 4 (random
    forests that differ only by their seed), 5 (a forest whose split used another salt) and 6 (a forest of
    another seed, cross-validated)."""
    with pytest.MonkeyPatch.context() as patch:
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "FASTTRACK_TRACKING_URI", "FASTTRACK_MODEL"):
            patch.delenv(var, raising=False)
        settings = get_settings(home=tmp_path_factory.mktemp("promotion") / "home", promotion_min_rows=50)
        frame = make_frame(rows=ROWS)
        for result in (
            fit(frame),
            weak_result(frame),
            forest(1),
            forest(2),
            forest(1, split_salt="pepper"),
            cross_validated_forest(3),
        ):
            publish(result, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)
        yield settings


@pytest.fixture
def settings(store: Settings) -> Settings:
    """The shared store with version 1 as the champion again and no promotion tags left from other tests."""
    client = registry_client(store)
    versions.promote(store, NAME, "1")
    for version in ("1", "2", "3", "4", "5", "6"):
        for key in client.get_model_version(NAME, version).tags:
            if key.startswith(promotion.TAG_PREFIX):
                client.delete_model_version_tag(NAME, version, key)
    return store


def champion(settings: Settings) -> str:
    return str(registry_client(settings).get_model_version_by_alias(NAME, "champion").version)


def tags(settings: Settings, version: str) -> dict[str, str]:
    found = registry_client(settings).get_model_version(NAME, version).tags
    return {k.removeprefix(promotion.TAG_PREFIX): v for k, v in found.items() if k.startswith(promotion.TAG_PREFIX)}


def test_a_worse_challenger_is_rejected_and_the_decision_recorded(settings: Settings) -> None:
    result = promote_challenger(settings, NAME, "2")
    assert result.decision == "rejected" and not result.moved
    assert champion(settings) == "1"
    assert result.metric == "roc_auc"
    assert result.challenger.score is not None and result.champion is not None and result.champion.score is not None
    assert result.challenger.score < result.champion.score
    assert result.data == "holdout of version 2"

    challenger_tags, champion_tags = tags(settings, "2"), tags(settings, "1")
    assert challenger_tags["role"] == "challenger" and champion_tags["role"] == "champion"
    for recorded in (challenger_tags, champion_tags):
        assert recorded["decision"] == "rejected"
        assert recorded["metric"] == "roc_auc"
        assert float(recorded["challenger_score"]) == result.challenger.score
        assert float(recorded["champion_score"]) == result.champion.score
        assert (recorded["challenger_version"], recorded["champion_version"]) == ("2", "1")
        assert recorded["margin"] == "0"
        assert recorded["data"] == "holdout of version 2"
        assert int(recorded["rows"]) == result.rows
        assert recorded["at"].endswith("+00:00")


def test_the_default_data_is_the_challengers_held_out_part(settings: Settings) -> None:
    # Scored on the challenger's own test part, the challenger's score is the test metric it was registered with.
    result = promote_challenger(settings, NAME, "2")
    run_id = registry_client(settings).get_model_version(NAME, "2").run_id
    registered = registry_client(settings).get_run(run_id).data.metrics["test_roc_auc"]
    assert result.challenger.score == pytest.approx(registered)


def test_force_promotes_a_loser_and_a_better_challenger_wins(settings: Settings) -> None:
    forced = promote_challenger(settings, NAME, "2", force=True)
    assert forced.decision == "forced" and champion(settings) == "2"
    assert tags(settings, "2")["decision"] == "forced"

    back = promote_challenger(settings, NAME, "1")
    assert back.decision == "promoted" and champion(settings) == "1"
    assert back.data == "holdout of version 1"


def test_the_margin_comes_from_the_settings_unless_given(settings: Settings) -> None:
    versions.promote(settings, NAME, "2")
    demanding = settings.model_copy(update={"promotion_margin": 0.9})
    assert promote_challenger(demanding, NAME, "1").decision == "rejected"
    assert tags(settings, "1")["margin"] == "0.9"
    assert promote_challenger(demanding, NAME, "1", margin=0.0).decision == "promoted"


def test_comparison_on_given_data(settings: Settings) -> None:
    frame = make_frame(rows=120, seed=7)
    result = promote_challenger(settings, NAME, "2", frame=frame, frame_source="fresh.csv", metric="accuracy")
    assert (result.data, result.rows, result.excluded, result.metric) == ("fresh.csv", 120, 0, "accuracy")
    assert tags(settings, "1")["data"] == "fresh.csv"

    with pytest.raises(DataError, match="no target column 'label'"):
        promote_challenger(settings, NAME, "2", frame=frame.drop(columns="label"), frame_source="unlabelled.csv")
    with pytest.raises(DataError, match=r"version 2 needs columns that bad\.csv lacks \(b\)"):
        promote_challenger(settings, NAME, "2", frame=frame.drop(columns="b"), frame_source="bad.csv")
    with pytest.raises(DataError, match=r"version 2 cannot be scored on bad\.csv: input does not match"):
        promote_challenger(settings, NAME, "2", frame=frame.assign(a="x"), frame_source="bad.csv")


def test_no_champion_and_already_champion(settings: Settings) -> None:
    client = registry_client(settings)
    client.delete_registered_model_alias(NAME, "champion")
    first = promote_challenger(settings, NAME, "2")
    assert first.decision == "no-champion" and champion(settings) == "2"
    assert tags(settings, "2")["decision"] == "no-champion"
    again = promote_challenger(settings, NAME, "2")
    assert again.decision == "already-champion" and not again.moved


def test_another_alias_is_compared_with_its_own_holder(settings: Settings) -> None:
    versions.promote(settings, NAME, "2", alias="staging")
    result = promote_challenger(settings, NAME, "1", alias="staging")
    assert result.decision == "promoted"
    assert str(registry_client(settings).get_model_version_by_alias(NAME, "staging").version) == "1"
    assert champion(settings) == "1"


def test_refusals(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelNotFoundError):
        promote_challenger(settings, NAME, "9")
    with pytest.raises(ModelNotFoundError):
        promote_challenger(settings, "nothing", "1")
    with pytest.raises(ConfigError, match="does not apply to classification"):
        promote_challenger(settings, NAME, "2", metric="rmse")
    # A version whose run logged no held-out part (trained before it was recorded) needs --data.
    monkeypatch.setattr(promotion, "HOLDOUT_ARTIFACT", "reports/none.parquet")
    with pytest.raises(ConfigError, match="--data"):
        promote_challenger(settings, NAME, "2")
    assert champion(settings) == "1"


def test_versions_of_different_tasks_are_not_compared(settings: Settings, tmp_path: Path) -> None:
    frame = make_frame().assign(label=lambda f: f["a"] * 2.0 + f["b"])
    config = TrainConfig.model_validate(
        {"data": "memory://toy.csv", "target": "label", "name": NAME, "model": "linear", "cv_folds": 0}
    )
    regression = train(frame, config, infer_schema(frame, "label", "regression"))
    run = publish(regression, settings=settings, source="memory://toy.csv", fingerprint="f" * 64)
    try:
        with pytest.raises(ConfigError, match="cannot be compared"):
            promote_challenger(settings, NAME, str(run.version))
    finally:
        registry_client(settings).delete_model_version(NAME, str(run.version))


def test_the_decision_records_its_interval_and_rows(settings: Settings) -> None:
    result = promote_challenger(settings, NAME, "2")
    assert result.interval is not None and result.improvement is not None and result.champion is not None
    low, high = result.interval
    assert low <= result.improvement <= high < 0  # the weak stump is surely worse
    assert (result.confidence, result.resamples) == (0.95, 1000)
    # Same salt, same features, same rows: the challenger's held-out rows are held out by the champion too.
    assert result.excluded == 0 and result.unrecorded == ()
    assert f"{result.rows} rows compared, 0 left out as training rows" in result.reason
    for recorded in (tags(settings, "2"), tags(settings, "1")):
        assert float(recorded["interval_low"]) == low and float(recorded["interval_high"]) == high
        assert float(recorded["improvement"]) == result.improvement
        assert (recorded["confidence"], recorded["resamples"], recorded["excluded"]) == ("0.95", "1000", "0")
    # The same rows and versions give the same interval and decision.
    again = promote_challenger(settings, NAME, "2")
    assert (again.decision, again.interval) == (result.decision, result.interval)


def test_a_clearly_better_challenger_wins_and_a_seed_does_not(settings: Settings) -> None:
    versions.promote(settings, NAME, "2")
    better = promote_challenger(settings, NAME, "1")
    assert better.decision == "promoted" and better.interval is not None and better.interval[0] > 0
    versions.promote(settings, NAME, "3")
    reseeded = promote_challenger(settings, NAME, "4")
    assert reseeded.decision == "rejected" and champion(settings) == "3"
    assert reseeded.interval is not None and reseeded.interval[0] <= 0 <= reseeded.interval[1]


def test_an_interval_that_straddles_the_margin_keeps_the_champion(settings: Settings) -> None:
    versions.promote(settings, NAME, "2")
    measured = promote_challenger(settings, NAME, "1", margin=1.0)
    assert measured.decision == "rejected" and measured.interval is not None and measured.improvement is not None
    low = measured.interval[0]
    margin = (low + measured.improvement) / 2  # the challenger beats it on average, not surely
    straddled = promote_challenger(settings, NAME, "1", margin=margin)
    assert straddled.decision == "rejected" and champion(settings) == "2"
    assert "does not clear the margin" in straddled.reason


def test_rows_a_version_trained_on_are_left_out(settings: Settings) -> None:
    # Version 5's split used another salt: most of its held-out rows are rows the champion trained on.
    result = promote_challenger(settings.model_copy(update={"promotion_min_rows": 10}), NAME, "5", margin=1.0)
    held_out = len(promotion.held_out_rows(settings, NAME, "5"))
    assert result.rows + result.excluded == held_out
    assert result.excluded > result.rows > 0
    assert f"{result.excluded} left out as training rows" in result.reason
    assert tags(settings, "5")["excluded"] == str(result.excluded)
    # Labelled rows that include the champion's training rows lose those rows too.
    every = make_frame(rows=ROWS)
    on_everything = promote_challenger(settings, NAME, "2", frame=every, frame_source="all.csv", margin=1.0)
    assert on_everything.rows + on_everything.excluded == ROWS
    assert on_everything.rows == len(promotion.held_out_rows(settings, NAME, "1"))


def test_too_few_fresh_rows_refuse_to_decide(settings: Settings) -> None:
    strict = settings.model_copy(update={"promotion_min_rows": 10_000})
    refusal = r"not enough rows to decide: \d+ of the \d+ rows .*\(FASTTRACK_PROMOTION_MIN_ROWS\)"
    with pytest.raises(DataError, match=refusal):
        promote_challenger(strict, NAME, "2")
    with pytest.raises(DataError, match=r"version 1 trained on \d+"):
        promote_challenger(settings.model_copy(update={"promotion_min_rows": 400}), NAME, "5", force=True)
    assert champion(settings) == "1" and tags(settings, "2") == {} and tags(settings, "5") == {}


def test_versions_without_a_record_decide_as_before_and_say_so(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(promotion, "TRAIN_ROWS_ARTIFACT", "reports/none.parquet")
    result = promote_challenger(settings, NAME, "5")
    assert result.unrecorded == ("5", "1") and result.excluded == 0
    assert "version 1 has no record of the rows it trained on" in result.reason
    assert tags(settings, "1")["unrecorded"] == "5,1"


@pytest.fixture
def third(settings: Settings) -> Iterator[str]:
    """Version 3 of ``toy``: the same model as version 1 (so the two tie), removed after the test."""
    client = registry_client(settings)
    one = client.get_model_version(NAME, "1")
    created = client.create_model_version(NAME, source=one.source, run_id=one.run_id, model_id=one.model_id)
    try:
        yield str(created.version)
    finally:
        client.delete_model_version(NAME, str(created.version))


def test_a_promotion_decides_again_when_another_one_moved_the_alias_first(
    settings: Settings, third: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The weak version 2 holds the alias; version 3 (= version 1) would beat it. While 3 is being compared with
    # 2, another promotion (1 against 2) finishes first: 3 must now be compared with 1, not moved over it.
    versions.promote(settings, NAME, "2")
    real = training_promotion.record_promotion
    raced: list[str] = []

    def another_promotion_lands_first(settings: Settings, result: promotion.PromotionResult) -> object:
        if not raced:
            raced.append(result.challenger.version)
            assert promote_challenger(settings, NAME, "1").decision == "promoted"
        return real(settings, result)

    monkeypatch.setattr(training_promotion, "record_promotion", another_promotion_lands_first)
    moves: list[AliasMovedError] = []
    result = promote_until_settled(settings, NAME, third, on_moved=moves.append)

    assert raced == [third] and [m.holder for m in moves] == ["1"]
    assert result.champion is not None and result.champion.version == "1"
    assert result.decision == "rejected" and "ties" in result.reason  # the same model as version 1
    assert champion(settings) == "1"
    events = read_history(settings, NAME).events
    other, ours = events[-2], events[-1]
    assert (other.before, other.after, other.decision) == ("2", "1", "promoted")
    assert (ours.before, ours.after, ours.decision) == ("1", "1", "rejected")
    assert ours.comparison is not None and (ours.comparison.challenger, ours.comparison.champion) == (third, "1")


def test_a_promotion_gives_up_when_the_alias_keeps_moving(
    settings: Settings, third: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = training_promotion.record_promotion

    def moved_every_time(settings: Settings, result: promotion.PromotionResult) -> object:
        versions.promote(settings, NAME, "2" if champion(settings) == "1" else "1")
        return real(settings, result)

    monkeypatch.setattr(training_promotion, "record_promotion", moved_every_time)
    with pytest.raises(AliasError, match=rf"toy@champion kept moving while version {third} was compared \(3 attempts"):
        promote_until_settled(settings, NAME, third)
    assert tags(settings, third) == {}


def test_a_promotion_of_versions_with_a_checked_graph_reads_neither_pipeline(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: `fasttrack models promote` read (unpickled) both versions' pipelines; both versions score through
    the runtime they serve with, so versions with a checked ONNX graph never have their pipeline read."""
    from fasttrack.registry import model_folder

    for version in ("1", "3"):
        assert load_model_folder(resolve_model(f"models:/{NAME}/{version}", settings).path).onnx_path is not None
    read: list[Path] = []

    def reading(model_file: Path, *args: object) -> object:
        read.append(model_file)
        raise AssertionError(f"{model_file} was read")

    monkeypatch.setattr(model_folder, "load_pipeline", reading)
    result = promote_challenger(settings, NAME, "3")
    assert result.decision in ("promoted", "rejected")
    assert read == []
