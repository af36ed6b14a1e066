"""Adapt the scoring app to ASGI, the interface of gunicorn's asyncio worker.

The body is read here, up to the configured limit (413 beyond it, without reading the
rest). run() is called on the event loop's thread: a worker scores one request at a
time, as the reference server's sync workers do, while idle keep-alive connections wait
cheaply in the loop. While it runs, no loop seems to be running, so run() may use
asyncio.run() as it could on the reference.

The access log is written here, one line per response, in the format gunicorn's access log
had; gunicorn's own (a logging record and a dict of every atom per request) cost about a
fifth of a worker's time per request.
"""

from __future__ import annotations

import asyncio
import sys
import time

from bundler_runtime.app import Request, ScoringApp, too_large

GONE = object()  # what _body returns for a client that left mid-body
CLIENT_LEFT = 499  # the access log's status for it, as nginx logs a request its client closed


class ASGIAdapter:
    def __init__(self, app: ScoringApp, max_request_bytes: int, access_log=None):
        self.app = app
        self.limit = max_request_bytes
        self.access_log = access_log  # None: sys.stdout as it is when a line is written

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        headers = {}
        for name, value in scope["headers"]:  # a repeated header reads as its values joined, as on the reference
            name, value = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        body = await self._body(headers, receive)
        if body is GONE:  # the client left before its body was whole: run() never sees half a request
            self._log_access(scope, CLIENT_LEFT, 0, headers.get("x-request-id", "-"), started)
            return
        if body is None:
            status, response_headers, payload = too_large(self.limit)
        else:
            request = Request(scope["method"], scope["path"], scope["query_string"].decode("latin-1"), headers, body)
            status, response_headers, payload = self._handle_outside_the_event_loop(request)
        response_headers.append(("Content-Length", str(len(payload))))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response_headers],
            }
        )
        sent = b"" if scope["method"] == "HEAD" else payload
        await send({"type": "http.response.body", "body": sent})
        request_id = next((value for name, value in response_headers if name == "x-request-id"), "-")
        self._log_access(scope, status, len(sent), request_id, started)

    def _handle_outside_the_event_loop(self, request):
        """run() is synchronous code, as on the reference's sync workers: inside it no event
        loop may seem to be running, or asyncio.run() there fails ("another loop is running")."""
        loop = asyncio.get_running_loop()
        asyncio._set_running_loop(None)  # the low-level hook asyncio offers to loop implementations
        try:
            return self.app.handle(request)
        finally:
            asyncio._set_running_loop(loop)
            asyncio.set_event_loop(loop)  # asyncio.run() leaves no current loop behind

    def _log_access(self, scope, status, sent, request_id, started):
        """`127.0.0.1 "POST /score HTTP/1.1" 200 5 0ms x-request-id=ID`, as gunicorn's access
        log wrote it with this server's format (a `"` inside a field escaped as `\\"`)."""
        client = scope.get("client")
        target = scope.get("raw_path") or scope["path"].encode()
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        line = (
            f'{client[0] if client else "-"} "{scope["method"]} {_quoted(target.decode("latin-1"))} '
            f'HTTP/{scope["http_version"]}" {status} {sent} {int((time.perf_counter() - started) * 1000)}ms '
            f"x-request-id={_quoted(request_id)}\n"
        )
        stream = self.access_log or sys.stdout
        if stream is None:  # started with stdout closed: no log, but the requests are served
            return
        try:
            stream.write(line)
            stream.flush()
        except Exception:  # noqa: BLE001 - a broken log must never fail a request or its connection
            pass

    async def _body(self, headers, receive):
        """The request body; None when it exceeds the limit, GONE when the client went away
        before sending all of it (fewer bytes than its Content-Length)."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return GONE
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return GONE if declared.isdigit() and size < int(declared) else b"".join(chunks)


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"') if '"' in text or "\\" in text else text
