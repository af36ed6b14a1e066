"""The scoring contract as one pure-ish function: Request -> (status, headers, body).

Client-visible behaviour follows the reference server (azureml-inference-server-http):
`GET /` -> "Healthy"; `POST /score` passes the body to run() as a str, `GET /score?a=1`
passes the query as a JSON object; run()'s return value is always JSON-encoded (a str
becomes a JSON string); errors are JSON {"message": ...}; the request-id headers are
echoed or generated. No web framework and no transport here (asgi.py adapts it to the
server), because per-request overhead is the product and the contract is easiest to test
as a plain function.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl

from bundler_runtime.entry import EntryScript
from bundler_runtime.settings import Settings
from bundler_runtime.swagger import SwaggerDocs
from bundler_runtime.timeout import ScoringTimeout, TimeLimit

logger = logging.getLogger("bundler_runtime")

HEADER_LIMIT = 100
JSON = "application/json"
HTML = "text/html; charset=utf-8"
NOT_FOUND = (
    "The requested URL was not found on the server. If you entered the URL manually please check "
    "your spelling and try again."
)
METHOD_NOT_ALLOWED = "The method is not allowed for the requested URL."
RUN_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."
INTERNAL_ERROR = "An unexpected internal error occurred. Check the logs for more info."
STATUS = {
    200: "200 OK",
    400: "400 BAD REQUEST",
    404: "404 NOT FOUND",
    405: "405 METHOD NOT ALLOWED",
    413: "413 REQUEST ENTITY TOO LARGE",
    415: "415 UNSUPPORTED MEDIA TYPE",
    431: "431 REQUEST HEADER FIELDS TOO LARGE",
    500: "500 INTERNAL SERVER ERROR",
}


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes = b""


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ScoringApp:
    def __init__(self, script: EntryScript, settings: Settings, swagger: SwaggerDocs):
        self.script = script
        self.settings = settings
        self.swagger = swagger
        self.time_limit = TimeLimit(settings.scoring_timeout)
        # SERVICE_PATH_PREFIX changes only the paths the swagger document shows, as on the
        # reference: whatever routes the prefix strips it before the request gets here.
        self.routes = {"/score": self.score, "/swagger.json": self.swagger_json, "/": self.health}

    def handle(self, request: Request):
        """(status, [(name, value)], body) for one request; never raises."""
        ids, refused = _request_ids(request.headers)
        if refused:
            status, headers, body = _error(431, refused)
        else:
            handler = self.routes.get(_route_path(request.path), self.not_found)
            try:
                status, headers, body = handler(request)
            except BadRequest as exc:
                status, headers, body = _error(exc.status, str(exc))
            except Exception:  # noqa: BLE001 - a bug here must not kill the worker
                logger.error("Unhandled exception:\n%s", traceback.format_exc())
                status, headers, body = _error(500, INTERNAL_ERROR)
        request_id, legacy_id, client_id = ids
        if request_id:
            headers.append(("x-request-id", request_id))
        if legacy_id:
            headers.append(("x-ms-request-id", legacy_id))
        if client_id:
            headers.append(("x-ms-client-request-id", client_id))
        if "traceid" in request.headers:  # Office services' own tracing header, echoed as the reference does
            headers.append(("TraceId", request.headers["traceid"]))
        headers.extend(_cors_headers(self.settings.cors_origins, request))
        return status, headers, body

    # -- routes -------------------------------------------------------------------

    def health(self, request):
        method = request.method
        if method in ("GET", "HEAD"):
            return 200, [("Content-Type", HTML)], b"Healthy"
        if method == "OPTIONS":
            return 200, [("Content-Type", HTML), ("Allow", "GET, HEAD, OPTIONS")], b""
        return _error(405, METHOD_NOT_ALLOWED)

    def not_found(self, request):
        return _error(404, NOT_FOUND)

    def swagger_json(self, request):
        if request.method == "OPTIONS":
            return 200, [("Content-Type", HTML), ("Allow", "GET, HEAD, OPTIONS")], b""
        if request.method not in ("GET", "HEAD"):
            return _error(405, METHOD_NOT_ALLOWED)
        versions = [value for key, value in parse_qsl(request.query, keep_blank_values=True) if key == "version"]
        document, message = self.swagger.get(versions[0] if versions else "2")  # the first, as Flask reads it
        if document is None:
            return _error(404, message)
        return 200, [("Content-Type", JSON), ("x-ms-run-function-failed", "False")], _dumps(document)

    def score(self, request):
        method = request.method
        if method == "OPTIONS":
            return 200, [("Content-Type", HTML), ("x-ms-run-function-failed", "False")], b""
        if method == "GET":
            arguments = self._arguments_from_query(request)
        elif method == "POST":
            arguments = self._arguments_from_body(request)
        else:
            return _error(405, METHOD_NOT_ALLOWED)
        return self._run(arguments, request)

    # -- scoring ------------------------------------------------------------------

    def _run(self, arguments, request):
        headers = _title_case(request.headers) if self.script.wants_headers else {}
        started = time.perf_counter()
        try:
            with self.time_limit:
                output = self.script.call(arguments, headers)
        except ScoringTimeout:
            logger.error("run() exceeded the scoring timeout of %s ms", self.settings.scoring_timeout_ms)
            return _error(500, f"Scoring timeout after {self.settings.scoring_timeout_ms} ms", run_failed=True)
        except BaseException:  # noqa: BLE001 - even sys.exit() in run() fails one request, not the worker
            logger.error("run() raised an exception:\n%s", traceback.format_exc())
            return _error(500, RUN_FAILED, run_failed=True)
        elapsed_ms = (time.perf_counter() - started) * 1000
        try:
            body = _dumps({} if output is None else output)
        except (TypeError, ValueError):
            logger.error("run() returned a value that is not JSON-serialisable:\n%s", traceback.format_exc())
            return _error(500, INTERNAL_ERROR)
        return (
            200,
            [
                ("Content-Type", JSON),
                ("x-ms-run-function-failed", "False"),
                ("x-ms-run-fn-exec-ms", f"{elapsed_ms:.3f}"),
            ],
            body,
        )

    def _arguments_from_query(self, request) -> dict:
        parsed = _query_as_json(request.query)
        if self.script.schema_parameters is None:
            return {self.script.input_name: json.dumps(parsed)}
        return self._schema_arguments(parsed)

    def _arguments_from_body(self, request) -> dict:
        body = request.body
        if self.script.schema_parameters is None:
            try:
                return {self.script.input_name: str(body, "utf-8")}
            except UnicodeDecodeError as exc:
                raise BadRequest(400, f"Input cannot be decoded as UTF-8: {exc}") from None
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not (content_type == JSON or (content_type.startswith("application/") and content_type.endswith("+json"))):
            raise BadRequest(415, "Expects Content-Type to be application/json")
        try:
            parsed = json.loads(body)
        except ValueError as exc:
            if body:
                raise BadRequest(400, f"POST body could not be decoded as JSON: {exc}") from None
            raise BadRequest(400, "POST body is empty. Expecting a JSON dictionary.") from None
        if not isinstance(parsed, dict):
            raise BadRequest(400, "POST body should be a JSON dictionary.")
        return self._schema_arguments(parsed)

    def _schema_arguments(self, body: dict) -> dict:
        arguments = {}
        for parameter in self.script.schema_parameters:
            value = body.get(parameter.name, parameter.default)
            if value is parameter.empty:
                raise BadRequest(400, f"A value is not provided for the {parameter.name!r} parameter.")
            arguments[parameter.name] = value
        return arguments


def _dumps(value) -> bytes:
    return json.dumps(value).encode("utf-8")


def _error(status: int, message: str, run_failed: bool = False):
    headers = [("Content-Type", JSON), ("x-ms-run-function-failed", "True" if run_failed else "False")]
    if status == 413:
        headers.append(("Connection", "close"))  # the unread body must not become the next request
    return status, headers, _dumps({"message": message})


def _request_ids(headers):
    """((x-request-id, x-ms-request-id, x-ms-client-request-id) to send back, refusal or None), as the
    reference sets them: an id sent empty stays empty (and is not sent back); a refused request
    still gets back the ids accepted before the one refused."""
    request_id = headers["x-request-id"] if "x-request-id" in headers else str(uuid.uuid4())
    if len(request_id) > HEADER_LIMIT:
        return ("", "", ""), f"x-request-id must not exceed {HEADER_LIMIT} characters"
    legacy = headers.get("x-ms-request-id", "")
    client = headers.get("x-ms-client-request-id", "")
    if legacy:
        client = client or legacy
    else:
        legacy = client or request_id
    if len(legacy) > HEADER_LIMIT or len(client) > HEADER_LIMIT:
        return (
            request_id,
            "",
            "",
        ), f"x-ms-request-id and x-ms-client-request-id must not exceed {HEADER_LIMIT} characters"
    return (request_id, legacy, client), None


def _route_path(path: str) -> str:
    """The path a route is looked up by: "//score" is "/score", and an absolute-form target
    ("GET http://host/score") its path, as the reference's router has it."""
    if "://" in path:
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    while "//" in path:
        path = path.replace("//", "/")
    return path or "/"


def _cors_headers(origins: tuple, request) -> list:
    """What flask-cors adds on the reference when AML_CORS_ORIGINS is set (methods GET and POST)."""
    if not origins:
        return []
    origin = request.headers.get("origin")
    if origin is None:  # not a browser's cross-origin request; flask-cors still answers
        return (
            [("Access-Control-Allow-Origin", "*")]
            if "*" in origins
            else [("Access-Control-Allow-Origin", origins[-1]), ("Vary", "Origin")]
        )
    if "*" not in origins and origin not in origins:
        return []
    headers = [("Access-Control-Allow-Origin", origin)]
    wanted_method = request.headers.get("access-control-request-method", "")
    if request.method == "OPTIONS" and wanted_method:  # a preflight
        if "access-control-request-headers" in request.headers:
            headers.append(("Access-Control-Allow-Headers", request.headers["access-control-request-headers"]))
        headers.append(("Access-Control-Allow-Methods", "GET, POST"))
    headers.append(("Vary", "Origin"))
    return headers


def too_large(limit: int):
    return _error(413, f"Request body is larger than the limit of {limit} bytes")


def _parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _query_as_json(query: str) -> dict:
    """`a=1&b=x&b=y` -> {"a": 1, "b": ["x", "y"]}: values parsed as JSON where they are JSON."""
    grouped: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        grouped.setdefault(key, []).append(value)
    return {k: _parse_value(v[0]) if len(v) == 1 else [_parse_value(x) for x in v] for k, v in grouped.items()}


def _title_case(headers: dict) -> dict:
    """Header names as the reference passes them to run(request_headers=...): "Content-Type"."""
    return {name.title(): value for name, value in headers.items()}
