"""monitoring/ against the real thing: a real Prometheus scraping running ``fasttrack serve`` processes.

Two servers: the sample classifier (predicted labels, live accuracy) and the sample regressor (the prediction value
histogram, live RMSE and MAE), so that every panel of the dashboard has data. They serve the models trained once per
test session from configs/sample.yaml and configs/sample-regression.yaml (``support.trained_home``: in-process and
without cross-validation, shared with tests/integration/serving; the ``fasttrack train`` command itself is tested by
tests/integration/test_cli.py and the README flow, and would add half a minute here).
Prometheus (the Debian package ``prometheus``) scrapes both every second and evaluates the shipped alert rules with
every ``for:`` shortened to a few seconds. The test sends in-distribution traffic and true labels, checks every query
of the dashboard and the rules through Prometheus' HTTP API, then shifts one feature and watches the drift gauge and
the drift alert react for that feature only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pandas as pd
import pytest

from prometheus import (
    ALERTS,
    API_JOB,
    METRICS,
    Prometheus,
    alert_queries,
    dashboard_queries,
    parse_query,
    render,
    run_prometheus,
    series_labels,
    with_short_for,
)
from support import REPO, Server, serve, trained_home

pytestmark = pytest.mark.integration

CLASSIFIER = "sample"
REGRESSOR = "sample-regression"
DRIFTED = "feature_1"
STABLE = "feature_2"
#: Series that are legitimately absent here, with why. Nothing else may return nothing.
ABSENT = {
    # Both sample models have numeric features only: no category can be unseen (the counter exists per
    # categorical feature). tests/unit/test_monitoring_config.py evaluates this panel on a stand-in exporter.
    "fasttrack_unseen_category_total": "no categorical feature in the sample models",
    # No request failed: the 5xx ratio is `(... or vector(0)) / ...`, evaluated as a whole below.
    'http_requests_total{job="fasttrack", status=~"5.."}': "no request failed",
}
#: Rows per request, and rows per phase: one full drift window (FASTTRACK_DRIFT_WINDOW's default, 1,000).
BATCH = 100
WINDOW = 1000
FEEDBACK = 200  # labels sent per model: above FASTTRACK_LIVE_MIN_SAMPLES (100), so the live metrics show
SHORT_FOR = "2s"


@dataclass
class Fleet:
    """The two servers and the Prometheus scraping them."""

    classifier: Server
    regressor: Server
    prometheus: Prometheus


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    home = trained_home(tmp_path_factory.getbasetemp())
    base = tmp_path_factory.mktemp("monitoring")
    with ExitStack() as stack:
        env = {"FASTTRACK_RELOAD_INTERVAL": "0"}  # the defaults otherwise: drift window 1,000, 100 labels, ...
        with ThreadPoolExecutor(2) as pool:  # the two servers start side by side (a few seconds each)
            started = [
                pool.submit(stack.enter_context, serve("--model", f"models:/{name}@champion", home=home, **env))
                for name in (CLASSIFIER, REGRESSOR)
            ]
            classifier, regressor = (future.result() for future in started)
        targets = [server.url.removeprefix("http://") for server in (classifier, regressor)]
        rules = with_short_for(ALERTS, SHORT_FOR)
        prometheus = stack.enter_context(run_prometheus(base / "prometheus", targets, rules=rules, interval="1s"))
        prometheus.wait_for_scrapes(count=2, timeout=30)
        yield Fleet(classifier, regressor, prometheus)


def predict(server: Server, records: list[dict[str, Any]]) -> list[str]:
    """POST the records in batches; the prediction ids, in order."""
    ids: list[str] = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for start in range(0, len(records), BATCH):
            response = client.post("/predict?ids=true", json=records[start : start + BATCH])
            assert response.status_code == 200, response.text
            ids.extend(response.json()["ids"])
    return ids


def send_feedback(server: Server, ids: list[str], truth: list[Any]) -> dict[str, Any]:
    pairs = [{"id": i, "label": label} for i, label in zip(ids, truth, strict=True)]
    response = httpx.post(f"{server.url}/feedback", json={"items": pairs}, timeout=30)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def scraped_after(prometheus: Prometheus, expr: str, what: str, timeout: float = 20) -> None:
    """Wait until Prometheus returns series for ``expr`` (the traffic just sent was scraped)."""
    prometheus.wait_for(what, lambda: bool(prometheus.query(expr)), timeout=timeout)


def psi(prometheus: Prometheus, feature: str, model: str = CLASSIFIER) -> float:
    found = prometheus.value(f'fasttrack_feature_drift{{model="{model}", feature="{feature}", method="psi"}}')
    assert found is not None, f"no PSI for {model}/{feature}"
    return found


def drift_alerts(prometheus: Prometheus) -> list[dict[str, Any]]:
    return [a for a in prometheus.alerts() if a["labels"].get("alertname") == "FastTrackFeatureDrift"]


def test_monitoring_against_a_real_prometheus(fleet: Fleet) -> None:
    prometheus = fleet.prometheus
    started = time.monotonic()

    # ------------------------------------------------------------------ in-distribution traffic and labels
    sample = pd.read_csv(REPO / "data" / "sample" / "classification.csv").sample(n=WINDOW, random_state=1)
    regression = pd.read_csv(REPO / "data" / "sample" / "regression.csv").sample(n=WINDOW // 2, random_state=1)
    records = sample.drop(columns=["label"]).to_dict("records")
    ids = predict(fleet.classifier, records)
    labelled = send_feedback(fleet.classifier, ids[:FEEDBACK], sample["label"].tolist()[:FEEDBACK])
    assert labelled["counts"]["matched"] == FEEDBACK and labelled["live"]["accuracy"] > 0.7
    unknown = send_feedback(fleet.classifier, ["not-an-id"], ["positive"])
    assert unknown["counts"]["unknown"] == 1 and unknown["items"][0]["reason"]
    single = httpx.get(f"{fleet.classifier.url}/predict", params={DRIFTED: "5.3", STABLE: "2.1"})
    assert len(single.headers["X-Prediction-Id"]) == 32
    regression_ids = predict(fleet.regressor, regression.drop(columns=["y"]).to_dict("records"))
    answer = send_feedback(fleet.regressor, regression_ids[:FEEDBACK], regression["y"].tolist()[:FEEDBACK])
    assert answer["counts"]["matched"] == FEEDBACK and answer["live"]["rmse"] is not None

    # Scraped after the traffic, and counters seen twice since, so rate() over the dashboard's window has data.
    scraped_after(prometheus, "fasttrack_live_accuracy", "live accuracy")
    scraped_after(prometheus, "fasttrack_live_rmse", "live RMSE")
    scraped_after(prometheus, f'fasttrack_feature_drift{{model="{CLASSIFIER}", feature="{DRIFTED}"}}', "drift")
    # HTTP series appear with their first request, so rate() needs requests after a scrape that saw them: more.
    predict(fleet.classifier, records[:BATCH])
    predict(fleet.regressor, regression.drop(columns=["y"]).to_dict("records")[:BATCH])
    for rated in ("http_requests_total", "fasttrack_prediction_rows_total"):
        prometheus.wait_for(
            f"a rate of {rated}",
            lambda rated=rated: (prometheus.value(f'sum(rate({rated}{{job="{API_JOB}"}}[1m]))') or 0) > 0,
            timeout=20,
        )

    # --------------------------------------------------------- what the server exports is what METRICS says
    for name, metric in METRICS.items():
        series = f"{name}_bucket" if metric.kind == "histogram" else name
        if name in ABSENT:
            continue
        found = prometheus.query(f'{series}{{job="{API_JOB}"}}')
        assert found, f"{series} is in prometheus.METRICS but no server exports it"
        for sample_series in found:
            labels = set(sample_series["metric"]) - {"__name__"}
            assert labels == series_labels(series), f"{series} has labels {labels}, METRICS says otherwise"

    # ------------------------------------------------ every query of the dashboard and the rules returns data
    empty = [where for where, expr in dashboard_queries() if not prometheus.query(render(expr)) and not _absent(expr)]
    assert not empty, f"dashboard queries that returned nothing: {empty}"
    for where, expr in alert_queries():
        prometheus.query(expr)  # raises on any evaluation error
        for selector in parse_query(expr)[0]:
            if selector.promql() in ABSENT:
                continue
            assert prometheus.query(selector.promql()), f"{where}: {selector.promql()} selects nothing"
    ratio = '(sum(rate(http_requests_total{job="fasttrack", status=~"5.."}[5m])) or vector(0))'
    assert prometheus.value(f'{ratio} / sum(rate(http_requests_total{{job="fasttrack"}}[5m]))') == 0
    # The failure counter exists at 0 for each served version, so the reload alert's increase() can see a first 1.
    failures = prometheus.query('fasttrack_model_reloads_total{outcome="failure"}')
    assert {(s["metric"]["model"], s["metric"]["version"], s["value"][1]) for s in failures} == {
        (CLASSIFIER, "1", "0"),
        (REGRESSOR, "1", "0"),
    }

    # ------------------------------------------------------------------- no drift, no alert, before the shift
    assert psi(prometheus, DRIFTED) < 0.1 and psi(prometheus, STABLE) < 0.1
    assert psi(prometheus, "x", REGRESSOR) < 0.1
    time.sleep(3 * int(SHORT_FOR.removesuffix("s")))  # several evaluations, each longer than the rule's `for:`
    assert drift_alerts(prometheus) == []

    # ------------------------------------------------------------- shift one feature: only it drifts, and alerts
    shifted = [{**record, DRIFTED: record[DRIFTED] + 6} for record in records]
    predict(fleet.classifier, shifted)
    prometheus.wait_for(
        f"the {DRIFTED} drift alert to fire",
        lambda: any(labels["feature"] == DRIFTED for labels in prometheus.firing("FastTrackFeatureDrift")),
        timeout=30,
    )
    threshold = prometheus.value(
        f'fasttrack_feature_drift_threshold{{model="{CLASSIFIER}", feature="{DRIFTED}", method="psi"}}'
    )
    assert threshold == 0.2
    assert psi(prometheus, DRIFTED) > threshold
    assert psi(prometheus, STABLE) < threshold
    over = prometheus.query('fasttrack_feature_drift{method="psi"} > fasttrack_feature_drift_threshold')
    drifting = {(s["metric"]["model"], s["metric"]["feature"]) for s in over}
    # The inputs: only the shifted feature. The model's output follows its input, so the prediction distribution
    # (reported as __prediction__) may move too; the stable feature and the other model never do.
    assert (CLASSIFIER, DRIFTED) in drifting
    assert drifting <= {(CLASSIFIER, DRIFTED), (CLASSIFIER, "__prediction__")}
    firing = {(labels["model"], labels["feature"]) for labels in prometheus.firing("FastTrackFeatureDrift")}
    assert firing <= drifting and (CLASSIFIER, STABLE) not in firing
    assert time.monotonic() - started < 60


def _absent(expr: str) -> bool:
    """Whether a dashboard expression only queries series legitimately absent here (see :data:`ABSENT`)."""
    names = {selector.name for selector in parse_query(expr)[0]}
    return bool(names) and names <= set(ABSENT)
