"""Adapt the scoring app to ASGI, the interface of gunicorn's asyncio worker.

The body is read here, up to the configured limit (413 beyond it, without reading the
rest). run() is called directly on the event loop: a worker scores one request at a
time, as the reference server's sync workers do, while idle keep-alive connections wait
cheaply in the loop.
"""

from __future__ import annotations

from bundler_runtime.app import Request, ScoringApp, too_large


class ASGIAdapter:
    def __init__(self, app: ScoringApp, max_request_bytes: int):
        self.app = app
        self.limit = max_request_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        body = await self._body(headers, receive)
        if body is None:
            status, response_headers, payload = too_large(self.limit)
        else:
            request = Request(scope["method"], scope["path"], scope["query_string"].decode("latin-1"), headers, body)
            status, response_headers, payload = self.app.handle(request)
        response_headers.append(("Content-Length", str(len(payload))))
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in response_headers],
        })
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else payload})

    async def _body(self, headers, receive):
        """The request body, or None when it exceeds the limit."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # the client went away; the reply goes nowhere anyway
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
