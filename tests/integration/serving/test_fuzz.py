"""schemathesis against a real ``fasttrack serve``: generated requests to every route of its own OpenAPI document.

Each operation of ``/openapi.json`` gets requests generated from its schema, valid ones and invalid ones, and each
answer is checked: never a 5xx, a status the document lists for the operation, the content type it lists, a body
matching the documented schema, and invalid input refused with a 4xx (schemathesis' checks). Generation is
derandomized (the same cases on every run, so CI is reproducible) and bounded: ``EXAMPLES`` per operation and mode,
over 1,000 requests in all (24 s on a quiet two-core machine, 50 s at load average 6, 96 s at 12). Access control
is off (its own tests cover it). Operations that take no body or query get valid requests only: none is invalid.

What fuzzing found is fixed and kept as a regression test of its own: the query parameters of ``GET /predict`` were
documented as numbers and booleans, and the server (rightly) reads more text than that: a missing marker, ``true``
for a number (tests/unit/serving/test_routes_ops.py checks the document).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from support import Server, serve

pytestmark = pytest.mark.integration

#: Generated cases per operation and generation mode (valid, invalid).
EXAMPLES = 64
#: Requests in all, at least: what issue 17 asks of the fuzzing.
AT_LEAST = 1000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]

#: Invalid input may also be refused as too large (413: a generated batch of more than max_batch_rows rows).
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": ["400", "404", "405", "413", "415", "422"]}}}
)


@pytest.fixture(scope="module")
def server(model_home: Path) -> Iterator[Server]:
    """The every-feature-kind model (numbers, categories, booleans, missing values), polling off."""
    with serve("--model", "models:/mixed@champion", home=model_home, FASTTRACK_RELOAD_INTERVAL="0") as running:
        yield running


def fuzz(operation: Any, mode: GenerationMode, session: requests.Session, base_url: str) -> tuple[int, list[str]]:
    """Send ``EXAMPLES`` generated cases of ``operation``; the number sent and the failures found (as text)."""
    sent = [0]
    failures: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        sent[0] += 1
        try:
            case.call_and_validate(base_url=base_url, session=session, checks=CHECKS, timeout=30)
        except (AssertionError, BaseExceptionGroup) as failure:  # keep going: report every operation's failures
            if len(failures) < 3:
                failures.append(f"{operation.label} ({mode.value}): {failure}")

    run()
    return sent[0], failures


def test_every_route_answers_generated_requests_as_documented(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert {"POST /predict", "GET /predict", "POST /feedback", "POST /invocations", "POST /admin/reload"} <= labels
    assert "POST /v2/models/{name}/infer" in labels and "GET /model" in labels
    sent = 0
    failures: list[str] = []
    with requests.Session() as session:
        for operation in operations:
            # Invalid requests exist only for operations with a body or query (the rest take at most a name).
            takes_input = operation.body or operation.query
            for mode in (
                (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if takes_input else (GenerationMode.POSITIVE,)
            ):
                count, found = fuzz(operation, mode, session, server.url)
                sent += count
                failures += found
    assert not failures, "\n\n".join(failures)
    assert sent >= AT_LEAST, f"only {sent} generated requests"
    # Nothing the fuzzing sent broke the server: it still predicts.
    assert httpx.get(server.url + "/ready").json()["status"] == "ready"
