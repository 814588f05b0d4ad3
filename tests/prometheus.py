"""Helpers for the monitoring tests: the metrics FastTrack exports, the queries in monitoring/, and a real Prometheus.

:data:`METRICS` is the one list of the series ``monitoring/`` (alert rules and Grafana dashboard) relies on: what
the server's ``/metrics`` must expose, with its labels. tests/unit/test_monitoring_config.py checks that the
configs use exactly these; the integration test checks that a running ``fasttrack serve`` exports them.

:func:`run_prometheus` starts the Debian ``prometheus`` binary on a copy of ``monitoring/prometheus.yml`` pointed at
a target of the test's choosing, with the alert rules (or a test variant of them), and :class:`Prometheus` queries
it through its HTTP API.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from support import free_port, stop

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "monitoring"
PROMETHEUS_CONFIG = MONITORING / "prometheus.yml"
ALERTS = MONITORING / "alerts.yml"
ALERT_TESTS = MONITORING / "alerts.test.yml"
DASHBOARDS = MONITORING / "grafana" / "dashboards"
PROVISIONING = MONITORING / "grafana" / "provisioning"
#: The scrape job of the FastTrack API in prometheus.yml; the rules and the dashboard select by it.
API_JOB = "fasttrack"


@dataclass(frozen=True)
class Metric:
    """A metric family the server exports: its type and its labels (besides ``job`` and ``instance``)."""

    kind: str  # counter, gauge or histogram
    labels: tuple[str, ...] = ()


#: Everything monitoring/ queries, by metric family name, with its labels. The server must export all of these.
METRICS: dict[str, Metric] = {
    # serving/http_metrics.py: prometheus-fastapi-instrumentator's default series (status grouped as 2xx, 4xx, 5xx).
    "http_requests_total": Metric("counter", ("handler", "method", "status")),
    "http_request_duration_highr_seconds": Metric("histogram"),
    # FastTrack's own.
    # 1 for the version being served (0 for versions served before).
    "fasttrack_model_info": Metric("gauge", ("model", "version")),
    "fasttrack_model_ready": Metric("gauge"),
    # Both outcomes created at 0 for the served version, or increase() misses the first failure.
    "fasttrack_model_reloads_total": Metric("counter", ("model", "version", "outcome")),
    "fasttrack_model_metric": Metric("gauge", ("model", "version", "metric")),
    "fasttrack_predictions_total": Metric("counter", ("model", "version", "outcome")),
    "fasttrack_prediction_rows_total": Metric("counter", ("model", "version")),
    "fasttrack_inference_seconds": Metric("histogram", ("model", "version")),
    "fasttrack_predicted_label_total": Metric("counter", ("model", "version", "label")),
    "fasttrack_prediction_value": Metric("histogram", ("model", "version")),
    "fasttrack_unseen_category_total": Metric("counter", ("model", "version", "feature")),
    "fasttrack_out_of_range_total": Metric("counter", ("model", "version", "feature")),
    "fasttrack_missing_value_total": Metric("counter", ("model", "version", "feature")),
    "fasttrack_ignored_field_total": Metric("counter", ("model", "version", "field")),
    "fasttrack_feature_drift": Metric("gauge", ("model", "version", "feature", "method")),
    "fasttrack_feature_drift_threshold": Metric("gauge", ("model", "version", "feature", "method")),
    "fasttrack_live_accuracy": Metric("gauge", ("model", "version")),
    "fasttrack_live_rmse": Metric("gauge", ("model", "version")),
    "fasttrack_live_mae": Metric("gauge", ("model", "version")),
    "fasttrack_live_samples": Metric("gauge", ("model", "version")),
    "fasttrack_feedback_total": Metric("counter", ("model", "version", "outcome")),
    # serving/estimate.py through the live collector: classifiers with a trusted calibration, and their recorded ECE.
    "fasttrack_estimated_accuracy": Metric("gauge", ("model", "version")),
    "fasttrack_calibration_error": Metric("gauge", ("model", "version")),
    # The inference log's writer (per process, whatever the model).
    "fasttrack_inference_log_written_rows_total": Metric("counter", ("table",)),
    "fasttrack_inference_log_dropped_rows_total": Metric("counter", ("table", "reason")),
    "fasttrack_inference_log_queue_rows": Metric("gauge"),
    # prometheus_client's process collector.
    "process_cpu_seconds_total": Metric("counter"),
    "process_resident_memory_bytes": Metric("gauge"),
}
#: Series Prometheus makes itself for every target, and the labels it adds to every scraped series.
SCRAPE_SERIES = {"up": Metric("gauge")}
TARGET_LABELS = ("job", "instance")


def series_labels(name: str) -> set[str] | None:
    """The labels a series name can carry (a family's ``_bucket``, ``_sum`` and ``_count`` included); ``None``
    when no metric of :data:`METRICS` (or ``up``) has this series."""
    if name in SCRAPE_SERIES:
        return {*TARGET_LABELS}
    if name in METRICS:
        return {*TARGET_LABELS, *METRICS[name].labels}
    for suffix, extra in (("_bucket", ("le",)), ("_sum", ()), ("_count", ())):
        family = name.removesuffix(suffix)
        if name.endswith(suffix) and METRICS.get(family, Metric("")).kind == "histogram":
            return {*TARGET_LABELS, *METRICS[family].labels, *extra}
    return None


def family(series: str) -> str:
    """The metric family a series belongs to (``x_bucket`` of histogram ``x`` -> ``x``)."""
    for suffix in ("_bucket", "_sum", "_count"):
        base = series.removesuffix(suffix)
        if series.endswith(suffix) and METRICS.get(base, Metric("")).kind == "histogram":
            return base
    return series


# ------------------------------------------------------------------------------------------ the configs' queries
def dashboards() -> dict[str, dict[str, Any]]:
    """Every Grafana dashboard JSON under monitoring/grafana/dashboards/, by file name."""
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """A dashboard's panels, those inside collapsed rows included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL expression) of every panel target of every dashboard."""
    return [
        (f"{name}: panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}", target["expr"])
        for name, dashboard in dashboards().items()
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def alert_rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    """Every rule of a rules file, each with its group's name under ``group``."""
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return [{**rule, "group": group["name"]} for group in groups for rule in group["rules"]]


def alert_queries() -> list[tuple[str, str]]:
    """(where, PromQL expression) of every alert rule."""
    return [(f"alert {rule['alert']}", str(rule["expr"])) for rule in alert_rules() if "alert" in rule]


def render(expr: str, *, rate_interval: str = "1m", model: str = ".*") -> str:
    """A dashboard expression with Grafana's variables replaced, ready for Prometheus."""
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("${model}", model)
        .replace("$model", model)
        .replace("$__interval", rate_interval)
    )


_TOKENS = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      |(?P<matchers>\{(?:[^}"]|"(?:[^"\\]|\\.)*")*\})
      |(?P<range>\[[^\]]*\])
      |(?P<number>\d+(?:\.\d+)?(?:e[+-]?\d+)?)
      |(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
      |(?P<paren>[()])
      |(?P<other>\S)""",
    re.VERBOSE,
)
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
# Aggregations can put their `by (...)` clause between the name and the parenthesis: `sum by (le) (...)`.
_AGGREGATIONS = {"sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile"}


@dataclass(frozen=True)
class Selector:
    """A vector selector in an expression: the series name and its label matchers (label, operator, value)."""

    name: str
    matchers: tuple[tuple[str, str, str], ...] = ()

    def promql(self) -> str:
        """The selector on its own, as PromQL."""
        inside = ", ".join(f'{label}{op}"{value}"' for label, op, value in self.matchers)
        return f"{self.name}{{{inside}}}" if inside else self.name


def parse_query(expr: str) -> tuple[list[Selector], set[str]]:
    """The vector selectors of a PromQL expression, and the labels named in its grouping and matching clauses.

    A small tokenizer, enough for the expressions in monitoring/: names followed by ``(`` are functions or
    aggregations, names after ``by``/``on``/``ignoring``/... are label lists, other names are series.
    """
    tokens = [(m.lastgroup, m.group()) for m in _TOKENS.finditer(expr)]
    selectors: list[Selector] = []
    grouping: set[str] = set()
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
        if kind == "ident" and text in _LABEL_LIST_KEYWORDS:
            if following == ("paren", "("):
                end = next(j for j in range(i + 2, len(tokens)) if tokens[j] == ("paren", ")"))
                grouping |= {t for k, t in tokens[i + 2 : end] if k == "ident"}
                i = end
        elif kind == "ident" and text not in _KEYWORDS | _AGGREGATIONS and following != ("paren", "("):
            matchers: tuple[tuple[str, str, str], ...] = ()
            if following[0] == "matchers":
                matchers = tuple(_MATCHER.findall(following[1]))
                i += 1
            selectors.append(Selector(text, matchers))
        i += 1
    return selectors, grouping


def with_short_for(rules: Path, duration: str) -> str:
    """The text of a rules file with every rule's ``for:`` set to ``duration`` (for tests that watch alerts fire)."""
    document = yaml.safe_load(rules.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = duration
    return yaml.safe_dump(document, sort_keys=False)


# ------------------------------------------------------------------------------------------- tools and a server
def tool(name: str) -> str:
    """The path of ``promtool`` or ``prometheus``; fails (never skips) when it is missing."""
    path = shutil.which(name)
    assert path, (
        f"{name} is not on PATH: the monitoring checks need the Debian package prometheus "
        "(`make monitoring-check` installs it, or: apt-get install --no-install-recommends prometheus)"
    )
    return path


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    """Run ``promtool ARGS`` in ``cwd`` and capture its output."""
    return subprocess.run([tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


class PrometheusError(AssertionError):
    """Prometheus answered a query with an error."""


@dataclass
class Prometheus:
    """A running Prometheus and its HTTP API."""

    process: subprocess.Popen[str]
    url: str
    log: Path
    folder: Path

    def output(self) -> str:
        """Everything Prometheus logged so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/PATH`` and return its ``data``; raises :class:`PrometheusError` when the status is an error."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate an instant query now: its result samples (``metric`` labels and ``value``)."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] in ("vector", "matrix") else [data]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, ``None`` when it returns nothing."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr} returned {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) with their labels and ``state``."""
        found: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return found

    def firing(self, name: str) -> list[dict[str, str]]:
        """Labels of the firing alerts called ``name``."""
        return [a["labels"] for a in self.alerts() if a["labels"].get("alertname") == name and a["state"] == "firing"]

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 60, every: float = 0.5) -> None:
        """Wait until ``check()`` is true; fail saying ``what`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not check():
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(every)

    def wait_for_scrapes(self, job: str = API_JOB, count: int = 3, timeout: float = 60) -> None:
        """Wait until every target of ``job`` was scraped successfully ``count`` times (so ``rate()`` has data)."""
        expr = f'min(sum_over_time(up{{job="{job}"}}[10m]))'
        self.wait_for(f"{count} scrapes of job {job}", lambda: (self.value(expr) or 0) >= count, timeout)


def prometheus_config(target: str | Sequence[str], listen: str, rules: Path, interval: str) -> dict[str, Any]:
    """monitoring/prometheus.yml with the API job aimed at ``target`` (one host:port or several), the self-scrape
    at ``listen``, the given rules file and ``interval`` as the scrape and evaluation interval; everything else as
    shipped."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval)
    config["rule_files"] = [str(rules)]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs[API_JOB]["static_configs"] = [{"targets": [target] if isinstance(target, str) else list(target)}]
    jobs["prometheus"]["static_configs"] = [{"targets": [listen]}]
    return config


@contextmanager
def run_prometheus(
    folder: Path,
    target: str | Sequence[str],
    *,
    rules: str | None = None,
    interval: str = "1s",
    ready_timeout: float = 60,
) -> Iterator[Prometheus]:
    """Start Prometheus scraping ``target`` (host:port of a FastTrack server, or several) every ``interval``, wait
    until it is ready, stop it afterwards. ``rules`` is the text of the rules file (default: monitoring/alerts.yml
    as is). Config, rules, data and log live in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    listen = f"127.0.0.1:{port}"
    rules_file = folder / "alerts.yml"
    rules_file.write_text(ALERTS.read_text(encoding="utf-8") if rules is None else rules, encoding="utf-8")
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(prometheus_config(target, listen, rules_file, interval)), encoding="utf-8")
    log = folder / "prometheus.log"
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={listen}",
            ],
            cwd=folder,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    server = Prometheus(process, f"http://{listen}", log, folder)

    def ready() -> bool:
        try:
            return httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        server.wait_for("prometheus to be ready", ready, ready_timeout, every=0.2)
        yield server
    finally:
        stop(process)
