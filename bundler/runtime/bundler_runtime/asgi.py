"""Adapt the scoring app to ASGI, the interface of gunicorn's asyncio worker.

The body is read here, up to the configured limit (413 beyond it, without reading the
rest). run() is called on the event loop's thread: a worker scores one request at a
time, as the reference server's sync workers do, while idle keep-alive connections wait
cheaply in the loop. While it runs, no loop seems to be running, so run() may use
asyncio.run() as it could on the reference.
"""

from __future__ import annotations

import asyncio
import contextlib

from bundler_runtime.app import Request, ScoringApp, too_large

GONE = object()  # what _body returns for a client that left mid-body


@contextlib.contextmanager
def _outside_the_event_loop():
    """run() is synchronous code, as on the reference's sync workers: inside it no event loop
    may seem to be running, or asyncio.run() there fails ("another loop is running")."""
    loop = asyncio.get_running_loop()
    asyncio._set_running_loop(None)  # the low-level hook asyncio offers to loop implementations
    try:
        yield
    finally:
        asyncio._set_running_loop(loop)
        asyncio.set_event_loop(loop)  # asyncio.run() leaves no current loop behind


class ASGIAdapter:
    def __init__(self, app: ScoringApp, max_request_bytes: int):
        self.app = app
        self.limit = max_request_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        headers = {}
        for name, value in scope["headers"]:  # a repeated header reads as its values joined, as on the reference
            name, value = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        body = await self._body(headers, receive)
        if body is GONE:
            return  # the client left before its body was whole: run() never sees half a request
        if body is None:
            status, response_headers, payload = too_large(self.limit)
        else:
            request = Request(scope["method"], scope["path"], scope["query_string"].decode("latin-1"), headers, body)
            with _outside_the_event_loop():
                status, response_headers, payload = self.app.handle(request)
        response_headers.append(("Content-Length", str(len(payload))))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response_headers],
            }
        )
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else payload})

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
