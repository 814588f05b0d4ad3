"""Access control: off by default; on, every route (the fast lane included) needs a key with its scope, refusals
have each API's error shape, keys rotate through a file, and no key ever shows in a log, a metric or an answer.
Also the finding that ``/admin/reload`` took any content type, so that a web page could trigger it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from fasttrack.config import Settings
from fasttrack.errors import ConfigError
from fasttrack.serving import app as app_module
from fasttrack.serving import auth
from fasttrack.serving.auth import ANY_KEY, AccessControl, required_scope
from fasttrack.serving.fastlane import PredictLane
from fasttrack.serving.http_metrics import AccessLog
from fasttrack.serving.keys import NewKey, new_key
from fasttrack.serving.metrics import ServerMetrics
from fasttrack.serving.predictor import Predictor

RECORD = {"feature_1": 5.3, "feature_2": 2.1}
V2_BODY = {"inputs": [{"name": n, "datatype": "FP64", "shape": [1], "data": [v]} for n, v in RECORD.items()]}
#: A request each route answers 200 (others: a GET with nothing).
REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/predict"): {"json": RECORD},
    ("GET", "/predict"): {"params": RECORD},
    ("POST", "/feedback"): {"json": [{"id": "nope", "label": "positive"}]},
    ("POST", "/invocations"): {"json": {"dataframe_records": [RECORD]}},
    ("POST", "/admin/reload"): {"json": {}},
    ("POST", "/v2/models/{name}/infer"): {"json": V2_BODY},
    ("POST", "/v2/models/{name}/versions/{version}/infer"): {"json": V2_BODY},
}
PROBE_ROUTES = {("GET", p) for p in ("/health", "/ready", "/metrics", "/v2/health/live", "/v2/health/ready")}
#: The scope each route needs: a route this table does not name fails the test below, so none can slip through.
SCOPE_OF: dict[tuple[str, str], str] = {
    **dict.fromkeys(PROBE_ROUTES, ANY_KEY),
    ("POST", "/feedback"): "feedback",
    ("POST", "/admin/reload"): "admin",
    **{
        ("GET", path): "predict"
        for path in ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", app_module.STATIC_DOCS, "/model")
    },
    ("GET", "/predict"): "predict",
    ("POST", "/predict"): "predict",
    ("POST", "/invocations"): "predict",
    **{
        ("GET", f"/v2{tail}"): "predict"
        for tail in ("", "/models/{name}", "/models/{name}/ready", "/models/{name}/versions/{version}")
    },
    ("GET", "/v2/models/{name}/versions/{version}/ready"): "predict",
    ("POST", "/v2/models/{name}/infer"): "predict",
    ("POST", "/v2/models/{name}/versions/{version}/infer"): "predict",
}
SCOPES = ("predict", "feedback", "admin")


def every_route(app: Any) -> list[tuple[str, str]]:
    """``(method, path template)`` of every route of ``app`` (HEAD aside; a mount as GET)."""
    found = []
    for context in iter_route_contexts(app.routes):
        methods = context.methods if context.methods is not None else {"GET"}
        found += [(method, context.path) for method in sorted(methods - {"HEAD"})]
    return found


def request_for(method: str, template: str) -> tuple[str, dict[str, Any]]:
    path = template.format(name="sample", version="1")
    if template == app_module.STATIC_DOCS:
        path += "/swagger-ui.css"
    return path, dict(REQUESTS.get((method, template), {}))


@pytest.fixture(scope="module")
def keys() -> dict[str, NewKey]:
    """One key per scope, one with all three, one with none."""
    made = {scope: new_key(f"{scope}-key", [scope]) for scope in SCOPES}
    made["all"] = new_key("all-key", list(SCOPES))
    made["none"] = new_key("bare-key", [])
    return made


def keyed(settings: Settings, keys: dict[str, NewKey], **update: Any) -> Settings:
    entries = " ".join(k.entry for k in keys.values())
    return settings.model_copy(update={"auth": True, "api_keys": entries, **update})


@contextmanager
def client_of(settings: Settings, classifier: Predictor) -> Iterator[tuple[TestClient, ServerMetrics]]:
    metrics = ServerMetrics()
    predictor = Predictor(classifier.model, classifier.source, metrics=metrics, settings=settings)
    with TestClient(app_module.create_app(settings, predictor=predictor, metrics=metrics)) as client:
        yield client, metrics


def bearer(key: NewKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.secret}"}


def expected_shape(path: str) -> set[str]:
    if path == "/invocations":
        return {"error_code", "message"}
    if path.startswith("/v2"):
        return {"error"}
    return {"error", "details"}


# ------------------------------------------------------------------------------------------------- off and on
def test_access_control_is_off_by_default(settings: Settings, classifier: Predictor) -> None:
    assert Settings().auth is False
    app = app_module.create_app(settings, predictor=classifier)
    assert not [m for m in app.user_middleware if m.cls is AccessControl]
    with client_of(settings, classifier) as (client, _):
        assert client.post("/predict", json=RECORD).status_code == 200
        assert client.post("/admin/reload", json={}).status_code == 200


def test_it_sits_inside_the_access_log_and_outside_the_fast_lane(
    settings: Settings, classifier: Predictor, keys: dict[str, NewKey]
) -> None:
    app = app_module.create_app(keyed(settings, keys, access_log=True), predictor=classifier)
    order = [m.cls for m in app.user_middleware]  # outermost first
    assert order.index(AccessLog) < order.index(AccessControl) < order.index(PredictLane)  # type: ignore[arg-type]


def test_every_route_needs_a_key_with_its_scope(
    settings: Settings, classifier: Predictor, keys: dict[str, NewKey]
) -> None:
    with client_of(settings, classifier) as (client, _):
        routes = every_route(client.app)
        assert set(routes) == set(SCOPE_OF), "a route without a decided scope: add it to SCOPE_OF and auth.py"
        baseline = {
            route: client.request(route[0], *request_for(*route)[:1], **request_for(*route)[1]) for route in routes
        }
    with client_of(keyed(settings, keys, auth_open_probes=False), classifier) as (client, metrics):
        for method, template in routes:
            path, arguments = request_for(method, template)
            needed = SCOPE_OF[(method, template)]
            assert required_scope(path) == needed, (method, path)
            missing = client.request(method, path, **arguments)
            assert missing.status_code == 401, (method, path, missing.text)
            assert missing.headers["WWW-Authenticate"] == 'Bearer realm="fasttrack"'
            assert set(missing.json()) == expected_shape(path), (path, missing.text)
            for name, key in keys.items():
                answer = client.request(method, path, headers=bearer(key), **arguments)
                allowed = needed == ANY_KEY or needed in key.key.scopes
                if allowed:
                    ok = baseline[(method, template)]
                    assert answer.status_code == ok.status_code == 200, (method, path, name, answer.text)
                else:
                    assert answer.status_code == 403, (method, path, name, answer.text)
                    assert set(answer.json()) == expected_shape(path)
                    assert f"lacks the scope '{needed}'" in answer.text
                    assert f'error="insufficient_scope", scope="{needed}"' in answer.headers["WWW-Authenticate"]
        refused = metrics.registry.get_sample_value(
            "fasttrack_auth_refused_total", {"reason": "missing", "key": "none"}
        )
        assert refused == len(routes)
        scoped = {"reason": "scope", "key": "bare-key"}
        assert metrics.registry.get_sample_value("fasttrack_auth_refused_total", scoped) == len(routes) - len(
            PROBE_ROUTES
        )
        assert metrics.registry.get_sample_value("fasttrack_api_keys") == len(keys)


def test_probes_are_open_by_default_and_closed_by_the_setting(
    settings: Settings, classifier: Predictor, keys: dict[str, NewKey]
) -> None:
    with client_of(keyed(settings, keys), classifier) as (client, _):
        for _, path in PROBE_ROUTES:
            assert client.get(path).status_code == 200, path
        assert client.get("/model").status_code == 401
    with client_of(keyed(settings, keys, auth_open_probes=False), classifier) as (client, _):
        for _, path in PROBE_ROUTES:
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=bearer(keys["none"])).status_code == 200, path  # any known key
        assert client.get("/model", headers=bearer(keys["none"])).status_code == 403


def test_both_headers_carry_a_key_and_a_wrong_one_is_refused(
    settings: Settings, classifier: Predictor, keys: dict[str, NewKey]
) -> None:
    secret = keys["predict"].secret
    with client_of(keyed(settings, keys), classifier) as (client, _):
        for headers in (
            {"X-API-Key": secret},
            {"Authorization": f"Bearer {secret}"},
            {"authorization": f"bearer {secret}"},
        ):
            assert client.post("/predict", json=RECORD, headers=headers).json() == {"prediction": "positive"}
        # X-API-Key wins over Authorization (which a proxy may use for its own credentials)
        both = {"X-API-Key": secret, "Authorization": "Basic dXNlcjpwYXNz"}
        assert client.post("/predict", json=RECORD, headers=both).status_code == 200
        for headers in (
            {"Authorization": f"Basic {secret}"},  # not a bearer token
            {"Authorization": "Bearer "},
            {"X-API-Key": ""},
        ):
            answer = client.post("/predict", json=RECORD, headers=headers)
            assert answer.status_code == 401 and "an API key is needed" in answer.text, headers
        wrong = client.post(
            "/predict", json=RECORD, headers={"X-API-Key": secret[:-1] + ("B" if secret.endswith("A") else "A")}
        )
        assert (wrong.status_code, wrong.json()) == (401, {"error": "the API key is not valid", "details": []})
        assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
        # an unknown path needs a key too: no key, no map of what exists
        assert client.get("/nowhere").status_code == 401
        assert client.get("/nowhere", headers=bearer(keys["predict"])).status_code == 404


def test_the_fast_lane_is_behind_the_key_check(
    settings: Settings, classifier: Predictor, keys: dict[str, NewKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    answered: list[str] = []
    answer = PredictLane.answer

    async def noted(self: PredictLane, scope: Any, receive: Any, send: Any) -> None:
        answered.append(scope.get(auth.API_KEY_SCOPE))
        await answer(self, scope, receive, send)

    monkeypatch.setattr(PredictLane, "answer", noted)
    with client_of(keyed(settings, keys), classifier) as (client, metrics):
        assert client.post("/predict", json=RECORD).status_code == 401
        assert client.post("/predict", json=RECORD, headers=bearer(keys["feedback"])).status_code == 403
        assert answered == []
        predictions = {"model": "sample", "version": "1", "outcome": "success"}
        assert metrics.registry.get_sample_value("fasttrack_predictions_total", predictions) == 0
        assert client.post("/predict", json=RECORD, headers=bearer(keys["predict"])).status_code == 200
        assert answered == ["predict-key"]  # the lane answered it, and saw whose key it was
        assert metrics.registry.get_sample_value("fasttrack_predictions_total", predictions) == 1


def test_refusals_have_each_apis_error_shape(
    settings: Settings, classifier: Predictor, keys: dict[str, NewKey]
) -> None:
    with client_of(keyed(settings, keys), classifier) as (client, _):
        mlflow = client.post("/invocations", json={"dataframe_records": [RECORD]})
        assert mlflow.status_code == 401 and mlflow.json()["error_code"] == "UNAUTHENTICATED"
        denied = client.post("/invocations", json={"dataframe_records": [RECORD]}, headers=bearer(keys["admin"]))
        assert denied.status_code == 403 and denied.json()["error_code"] == "PERMISSION_DENIED"
        v2 = client.post("/v2/models/sample/infer", json=V2_BODY)
        assert v2.status_code == 401 and set(v2.json()) == {"error"}
        brief = client.post("/feedback", json=[], headers=bearer(keys["predict"]))
        assert brief.status_code == 403
        assert brief.json() == {
            "error": "API key 'predict-key' lacks the scope 'feedback' this path needs",
            "details": [],
        }
        assert brief.headers["content-type"] == "application/json"


def test_the_root_path_is_judged_as_the_router_sees_it(
    settings: Settings, classifier: Predictor, keys: dict[str, NewKey]
) -> None:
    with client_of(keyed(settings, keys), classifier) as (client, _):
        proxied = TestClient(client.app, root_path="/api")  # behind a proxy mounting the server under /api
        assert proxied.post("/api/admin/reload", json={}, headers=bearer(keys["predict"])).status_code == 403
        assert proxied.post("/api/admin/reload", json={}, headers=bearer(keys["admin"])).status_code == 200


# ----------------------------------------------------------------------------------------------- rotation
def test_keys_rotate_through_the_key_file_without_a_restart(
    settings: Settings, classifier: Predictor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "KEY_FILE_INTERVAL", 0.0)  # look at the file on every request (1 s in service)
    old, new = new_key("client-2026-11", ["predict"]), new_key("client-2026-12", ["predict"])
    file = tmp_path / "keys.txt"

    def write(*made: NewKey) -> None:
        (tmp_path / "keys.new").write_text("".join(k.entry + "\n" for k in made))
        (tmp_path / "keys.new").replace(file)

    write(old)
    settings = settings.model_copy(update={"auth": True, "api_keys_file": file})
    with client_of(settings, classifier) as (client, metrics):

        def status(key: NewKey) -> int:
            return client.post("/predict", json=RECORD, headers={"X-API-Key": key.secret}).status_code

        assert (status(old), status(new)) == (200, 401)
        write(old, new)  # both in force while clients move over
        assert (status(old), status(new)) == (200, 200)
        assert metrics.registry.get_sample_value("fasttrack_api_keys") == 2
        write(new)  # the old one revoked
        assert (status(old), status(new)) == (401, 200)
        assert metrics.registry.get_sample_value("fasttrack_api_keys") == 1


def test_bad_access_settings_stop_the_server_before_it_serves(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the API key file"):
        app_module.create_app(settings.model_copy(update={"auth": True, "api_keys_file": tmp_path / "nope"}))
    with pytest.raises(ConfigError, match="cannot read the API key file"):
        auth.check(settings.model_copy(update={"auth": True, "api_keys_file": tmp_path / "nope"}))


# ------------------------------------------------------------------------------------- nothing secret leaks
def test_no_key_reaches_a_log_line_a_metric_or_an_answer(
    settings: Settings, classifier: Predictor, keys: dict[str, NewKey], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    stranger = new_key("stranger", ["admin"]).secret  # a well-formed key the server does not know
    secrets = [k.secret for k in keys.values()] + [stranger]
    seen: list[str] = []
    with client_of(keyed(settings, keys, access_log=True, auth_open_probes=False), classifier) as (client, _):
        for method, template in every_route(client.app):
            path, arguments = request_for(method, template)
            for secret in (keys["predict"].secret, keys["admin"].secret, stranger):
                for headers in ({"X-API-Key": secret}, {"Authorization": f"Bearer {secret}"}):
                    answer = client.request(method, path, headers=headers, **arguments)
                    seen += [answer.text, json.dumps(dict(answer.headers))]
        seen.append(client.get("/metrics", headers=bearer(keys["none"])).text)
        seen.append(client.get("/openapi.json", headers=bearer(keys["predict"])).text)
    seen += [record.getMessage() for record in caplog.records] + [caplog.text]
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "fasttrack.access"]
    assert access, "the access log was on: it must have written lines"
    assert {line["key"] for line in access} >= {"predict-key", "admin-key", None}
    for secret in secrets:
        for text in seen:
            assert secret not in text
            assert secret[3:20] not in text  # not even a part of it


# ------------------------------------------------------------------------------- /admin/reload and web pages
@pytest.mark.parametrize("auth_on", [False, True])
def test_admin_reload_refuses_what_a_web_page_can_send_without_a_preflight(
    settings: Settings, classifier: Predictor, keys: dict[str, NewKey], auth_on: bool
) -> None:
    headers = bearer(keys["admin"]) if auth_on else {}
    with client_of(keyed(settings, keys) if auth_on else settings, classifier) as (client, _):
        # what a form or fetch(..., {mode: "no-cors"}) can send: a form, text, multipart, or no content type at all
        for kwargs in (
            {},
            {"content": b""},
            {"data": {"a": "b"}},
            {"content": b"{}", "headers": {"Content-Type": "text/plain"}},
            {"files": {"f": ("f.txt", b"x")}},
        ):
            extra = dict(kwargs.pop("headers", {}))  # type: ignore[call-overload]
            answer = client.post("/admin/reload", headers={**headers, **extra}, **kwargs)
            assert answer.status_code == 415, (kwargs, answer.text)
            assert "needs 'Content-Type: application/json'" in answer.json()["error"]
        for body in ({"json": {}}, {"content": b"", "headers": {"Content-Type": "application/json"}}):
            extra = dict(body.pop("headers", {}))  # type: ignore[call-overload]
            answer = client.post("/admin/reload", headers={**headers, **extra}, **body)
            assert answer.status_code == 200 and answer.json()["outcome"] == "unchanged", answer.text
        documented = client.get("/openapi.json", headers=bearer(keys["predict"])).json()
        assert "415" in documented["paths"]["/admin/reload"]["post"]["responses"]
