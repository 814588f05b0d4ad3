"""FastAPI's private API used by fasttrack/serving/fastapi_private.py: these fail when an upgrade changes it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk.trace import TracerProvider

from fasttrack.serving import fastapi_private


def test_the_private_names_exist() -> None:
    assert fastapi_private._unconfigured is not None
    assert fastapi_private._route_selected is not None


def test_unset_providers_are_what_fastapi_finds_unconfigured() -> None:
    # The API's deferred proxies, as the globals are before anything is set up (built here, not read from the
    # process' globals, which another test may have set).
    proxies: list[Any] = [
        trace.ProxyTracerProvider(),
        metrics._internal._ProxyMeterProvider(),
        _logs._internal.ProxyLoggerProvider(),
    ]
    assert fastapi_private.telemetry_unconfigured(*proxies)
    assert not fastapi_private.telemetry_unconfigured(*proxies[:2], TracerProvider())
    assert not fastapi_private.telemetry_unconfigured(TracerProvider())
    # And FastAPI's own per-request decision agrees while nothing is set in this process.
    unset = all(
        fastapi_private.telemetry_unconfigured(p)
        for p in (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider())
    )
    assert FastAPI()._native_telemetry.enabled() is not unset


def test_route_selected_names_the_request_like_the_router() -> None:
    from fastapi.telemetry._api import _RequestTelemetry
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()  # not the global one: this test sets nothing process-wide
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    span = provider.get_tracer("test").start_span("POST")
    telemetry = _RequestTelemetry(span=span, span_method="POST")
    fastapi_private.route_selected({"fastapi.telemetry": telemetry}, "/predict")
    span.end()
    (finished,) = exporter.get_finished_spans()
    assert telemetry.route == "/predict"
    assert finished.name == "POST /predict"
    assert finished.attributes is not None and finished.attributes["http.route"] == "/predict"
    fastapi_private.route_selected({}, "/predict")  # no telemetry on the request: nothing to tell
