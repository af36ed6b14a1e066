"""The ASGI adapter in-process: the access log line it writes, and that logging can never fail
a request (the server tests run the same adapter behind gunicorn)."""

from __future__ import annotations

import asyncio
import io
import sys

from servers import RUNTIME_DIR

sys.path.insert(0, str(RUNTIME_DIR))

from test_app import app_for

from bundler_runtime.asgi import ASGIAdapter


def exchange(adapter, method="POST", raw_path=b"/score", query=b"", body=b"{}", headers=(), complete=True):
    """Run one request through the adapter; the ASGI messages it sent."""
    scope = {
        "type": "http",
        "method": method,
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query,
        "http_version": "1.1",
        "headers": [(b"content-length", str(len(body)).encode()), *headers],
        "client": ("10.0.0.7", 41000),
    }
    sent = []

    async def receive():
        if complete:
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(adapter(scope, receive, send))
    return sent


def test_the_access_line_says_client_request_status_bytes_time_and_request_id():
    log = io.StringIO()
    adapter = ASGIAdapter(app_for(lambda raw_data: "ok"), 1000, access_log=log)
    sent = exchange(adapter, query=b"x=1", headers=[(b"x-request-id", b"r-1")])
    assert sent[0]["status"] == 200
    assert log.getvalue() == '10.0.0.7 "POST /score?x=1 HTTP/1.1" 200 4 0ms x-request-id=r-1\n'


def test_quotes_in_the_logged_fields_are_escaped():
    log = io.StringIO()
    adapter = ASGIAdapter(app_for(lambda raw_data: "ok"), 1000, access_log=log)
    sent = exchange(adapter, "GET", raw_path=b'/a"b', headers=[(b"x-request-id", b'id"x')])
    size = len(sent[1]["body"])
    assert log.getvalue() == f'10.0.0.7 "GET /a\\"b HTTP/1.1" 404 {size} 0ms x-request-id=id\\"x\n'


def test_a_client_that_left_mid_body_is_logged_and_run_never_called():
    calls, log = [], io.StringIO()
    adapter = ASGIAdapter(app_for(calls.append), 1000, access_log=log)
    sent = exchange(adapter, headers=[(b"x-request-id", b"r-2")], complete=False)
    assert sent == [] and calls == []
    assert log.getvalue() == '10.0.0.7 "POST /score HTTP/1.1" 499 0 0ms x-request-id=r-2\n'


def test_a_closed_or_broken_stdout_fails_no_request(monkeypatch):
    class Broken(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    for stdout in (None, Broken()):
        monkeypatch.setattr(sys, "stdout", stdout)
        sent = exchange(ASGIAdapter(app_for(lambda raw_data: "ok"), 1000))
        assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
        assert sent[1]["body"] == b'"ok"'
