"""The scoring contract as a function: ScoringApp.handle(Request) -> (status, headers, body),
with no server, no socket and no process (the contract suite runs the same cases through
real servers, ours and the reference)."""

from __future__ import annotations

import json
import sys

import pytest
from servers import RUNTIME_DIR

sys.path.insert(0, str(RUNTIME_DIR))

from bundler_runtime import settings as settings_module
from bundler_runtime.app import Request, ScoringApp
from bundler_runtime.entry import EntryScript
from bundler_runtime.swagger import SwaggerDocs


def app_for(run, wants_headers=False, **env):
    script = EntryScript(
        module=None,
        init=lambda: None,
        run=run,
        schema_parameters=None,
        input_name="raw_data",
        wants_headers=wants_headers,
    )
    settings = settings_module.from_environment({"AML_APP_ROOT": "/nonexistent", **env})
    return ScoringApp(script, settings, SwaggerDocs(script, settings))


def request(method="POST", path="/score", body=b"", query="", **headers):
    return Request(method, path, query, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def answer(app, *args, **kwargs):
    status, headers, body = app.handle(request(*args, **kwargs))
    return status, dict(headers), body


def test_run_gets_the_body_as_a_str_and_its_result_is_json():
    seen = []
    app = app_for(lambda raw_data: seen.append(raw_data) or {"n": len(raw_data)})
    status, headers, body = answer(app, body=b'{"data": [1]}')
    assert (status, json.loads(body), seen) == (200, {"n": 13}, ['{"data": [1]}'])
    assert headers["Content-Type"] == "application/json" and float(headers["x-ms-run-fn-exec-ms"]) >= 0


def test_a_str_result_is_a_json_string_and_none_an_empty_object():
    assert answer(app_for(lambda raw_data: "yes"))[2] == b'"yes"'
    assert answer(app_for(lambda raw_data: None))[2] == b"{}"


def test_get_score_passes_the_query_as_a_json_object():
    app = app_for(lambda raw_data: json.loads(raw_data))
    assert json.loads(answer(app, "GET", query="a=1&b=x&b=y")[2]) == {"a": 1, "b": ["x", "y"]}


def test_health_not_found_and_wrong_method():
    app = app_for(lambda raw_data: raw_data)
    assert answer(app, "GET", "/")[::2] == (200, b"Healthy")
    assert answer(app, "GET", "/nope")[0] == 404
    assert answer(app, "PUT", "/score")[0] == 405
    assert answer(app, "GET", "//score")[0] == 200  # as the reference's router reads it


def test_a_failing_run_is_a_500_json_error_and_the_app_keeps_answering():
    def run(raw_data):
        if raw_data == "boom":
            raise ValueError("boom")
        if raw_data == "exit":
            sys.exit(3)
        return "fine"

    app = app_for(run)
    for body in (b"boom", b"exit"):
        status, headers, payload = answer(app, body=body)
        assert status == 500 and headers["x-ms-run-function-failed"] == "True"
        assert "message" in json.loads(payload)
    assert answer(app, body=b"ok")[0] == 200


def test_an_undecodable_body_is_a_400():
    status, _, body = answer(app_for(lambda raw_data: raw_data), body=b"\xff\xfe")
    assert status == 400 and "UTF-8" in json.loads(body)["message"]


def test_a_result_json_cannot_encode_is_a_500():
    assert answer(app_for(lambda raw_data: object()))[0] == 500


@pytest.mark.parametrize("sent, echoed", [({}, None), ({"x_request_id": "abc"}, "abc")])
def test_request_ids_are_echoed_or_made(sent, echoed):
    _, headers, _ = answer(app_for(lambda raw_data: 1), **sent)
    assert headers["x-request-id"] == (echoed or headers["x-request-id"]) and len(headers["x-request-id"]) >= 3
    assert headers["x-ms-request-id"] == headers["x-request-id"]


def test_a_too_long_request_id_is_a_431():
    assert answer(app_for(lambda raw_data: 1), x_request_id="i" * 101)[0] == 431


def test_request_headers_reach_a_run_that_asks_for_them_title_cased():
    app = app_for(lambda raw_data, request_headers: request_headers["X-Custom"], wants_headers=True)
    assert answer(app, x_custom="v")[2] == b'"v"'


def test_the_scoring_timeout_is_a_500_naming_it():
    import time

    def slow(raw_data):
        time.sleep(5)

    status, _, body = answer(app_for(slow, BUNDLER_SCORING_TIMEOUT="0.05"))
    assert status == 500 and json.loads(body)["message"] == "Scoring timeout after 50 ms"


def test_the_timer_is_off_between_requests_and_survives_a_run_that_takes_sigalrm():
    import signal
    import time

    def run(raw_data):
        if raw_data == "take the alarm":  # a run() with its own alarm-based timeouts
            signal.signal(signal.SIGALRM, lambda signum, frame: None)
            return "taken"
        time.sleep(5)

    app = app_for(run, BUNDLER_SCORING_TIMEOUT="0.05")
    try:
        assert answer(app, body=b"take the alarm")[2] == b'"taken"'
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        started = time.monotonic()
        status, _, body = answer(app)
        assert status == 500 and json.loads(body)["message"] == "Scoring timeout after 50 ms"
        assert time.monotonic() - started < 2
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


def test_swagger_is_served_with_the_service_name():
    app = app_for(lambda raw_data: raw_data, SERVICE_NAME="diabetes")
    status, _, body = answer(app, "GET", "/swagger.json")
    assert status == 200 and json.loads(body)["info"]["title"] == "diabetes"
    assert answer(app, "GET", "/swagger.json", query="version=9")[0] == 404
