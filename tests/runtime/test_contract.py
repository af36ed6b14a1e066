"""The client-visible contract, case by case, against BOTH our runtime and the reference
Azure ML server (azureml-inference-server-http) running the same entry script: status,
body and the headers a client can rely on must be the same."""

from __future__ import annotations

import json
import socket
import uuid

import pytest
from servers import SCRIPTS, start

pytestmark = pytest.mark.reference


def pair(script, tmp_path_factory, env=None):
    tmp = tmp_path_factory.mktemp(script.stem)
    servers = [start("ours", script, tmp, env), start("reference", script, tmp, env)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    yield from pair(
        SCRIPTS / "plain.py", tmp_path_factory, {"SCORING_TIMEOUT_MS": "1500", "BUNDLER_SCORING_TIMEOUT": "1.5"}
    )


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    yield from pair(SCRIPTS / "schema.py", tmp_path_factory)


@pytest.fixture(scope="module")
def headers_script(tmp_path_factory):
    yield from pair(SCRIPTS / "headers.py", tmp_path_factory)


@pytest.fixture(scope="module")
def helper(tmp_path_factory):
    yield from pair(SCRIPTS / "helperdir" / "score.py", tmp_path_factory)


JSON = {"Content-Type": "application/json"}
CASES = [
    ("health", "GET", "/", None, {}),
    ("score json", "POST", "/score", b'{"data": [[1, 2], [3, 4]]}', JSON),
    ("score text body", "POST", "/score", b"not json at all", {"Content-Type": "text/plain"}),
    ("score a list", "POST", "/score", b"[1, 2, 3]", JSON),
    ("run returns a str", "POST", "/score", b'{"string": "plain text"}', JSON),
    ("run returns None", "POST", "/score", b'{"none": true}', JSON),
    ("run raises", "POST", "/score", b'{"fail": true}', JSON),
    ("still serving after a failure", "POST", "/score", b'{"after": "failure"}', JSON),
    ("unserialisable result", "POST", "/score", b'{"unserialisable": true}', JSON),
    ("undecodable body", "POST", "/score", b"\xff\xfe\xfa", {"Content-Type": "application/octet-stream"}),
    ("empty body", "POST", "/score", b"", JSON),
    ("GET with query", "GET", "/score?a=1&b=[1,2]&c=x&c=y&d=null", None, {}),
    ("GET without query", "GET", "/score", None, {}),
    ("wrong method", "PUT", "/score", b"{}", JSON),
    ("DELETE", "DELETE", "/score", None, {}),
    ("unknown path", "GET", "/nope", None, {}),
    ("POST to health", "POST", "/", b"{}", JSON),
    ("OPTIONS score", "OPTIONS", "/score", None, {}),
    ("swagger default", "GET", "/swagger.json", None, {}),
    ("swagger 3", "GET", "/swagger.json?version=3", None, {}),
    ("swagger 3.1", "GET", "/swagger.json?version=3.1", None, {}),
    ("swagger bad version", "GET", "/swagger.json?version=7", None, {}),
    ("scoring timeout", "POST", "/score", b'{"sleep": 5}', JSON),
    ("serving after a timeout", "POST", "/score", b'{"after": "timeout"}', JSON),
    ("run catches the timeout", "POST", "/score", b'{"sleep_or_fallback": 5}', JSON),
    ("asyncio.run inside run", "POST", "/score", b'{"asyncio": 21}', JSON),
    ("sys.exit inside run", "POST", "/score", b'{"exit": 1}', JSON),
    ("sys.exit(3) inside run", "POST", "/score", b'{"exit": 3}', JSON),
    ("KeyboardInterrupt inside run", "POST", "/score", b'{"interrupt": true}', JSON),
    ("serving after sys.exit", "POST", "/score", b'{"after": "exit"}', JSON),
    ("double slash", "POST", "//score", b'{"a": 1}', JSON),
    ("double slash health", "GET", "//", None, {}),
    ("absolute-form target", "GET", "http://127.0.0.1/score?a=1", None, {}),
    ("OPTIONS swagger", "OPTIONS", "/swagger.json", None, {}),
    ("swagger first version wins", "GET", "/swagger.json?version=3&version=2", None, {}),
]
BETTER_THAN_REFERENCE = {"sys.exit inside run", "sys.exit(3) inside run", "KeyboardInterrupt inside run"}
RUN_FAILED = "An unexpected error occurred in scoring script. Check the logs for more info."
# Headers whose presence and value clients can see; Date, Server and Content-Length are the server's own.
COMPARED_HEADERS = ("content-type", "x-ms-run-function-failed")


def visible(response, ignore_body=False):
    body = response.body
    if response.headers.get("content-type") == "application/json" and body:
        body = json.loads(body)
    return {
        "status": response.status,
        "headers": {h: response.headers.get(h) for h in COMPARED_HEADERS},
        # Flask lists the allowed methods in no fixed order.
        "allow": sorted(response.headers.get("allow", "").replace(" ", "").split(",")),
        "has_exec_ms": "x-ms-run-fn-exec-ms" in response.headers,
        "body": None if ignore_body else body,
    }


@pytest.mark.parametrize("name, method, path, body, headers", CASES, ids=[c[0] for c in CASES])
def test_plain_script_matches_reference(plain, name, method, path, body, headers):
    ours, reference = (server.request(method, path, body, headers) for server in plain)
    if name in BETTER_THAN_REFERENCE:
        # The reference's sync worker answers these with gunicorn's HTML error page; ours with
        # the JSON error every other failing run() gets. Both keep serving (the next case).
        assert ours.status == reference.status == 500
        assert json.loads(ours.body) == {"message": RUN_FAILED} and ours.headers["x-ms-run-function-failed"] == "True"
        return
    assert visible(ours) == visible(reference)
    if name == "score json":
        assert json.loads(ours.body)["echo"] == {"data": [[1, 2], [3, 4]]}
    if name == "run returns a str":
        assert ours.body == b'"plain text"'  # a str is JSON-encoded, as Azure does
    if name == "scoring timeout":
        assert json.loads(ours.body) == {"message": "Scoring timeout after 1500 ms"}
    if name == "run catches the timeout":
        assert ours.body == b'"fallback"'
    if name == "asyncio.run inside run":
        assert ours.status == 200 and ours.body == b"42"


GENERATED = "generated"


@pytest.mark.parametrize(
    "sent, expected",
    [
        # (x-request-id, x-ms-request-id, x-ms-client-request-id) in the response
        ({}, (GENERATED, GENERATED, None)),
        ({"x-request-id": "abc-123"}, ("abc-123", "abc-123", None)),
        ({"x-ms-client-request-id": "client-1"}, (GENERATED, "client-1", "client-1")),
        ({"x-ms-request-id": "legacy-1"}, (GENERATED, "legacy-1", "legacy-1")),
        ({"x-request-id": "r", "x-ms-request-id": "l", "x-ms-client-request-id": "c"}, ("r", "l", "c")),
        ({"x-request-id": ""}, (None, None, None)),  # sent empty: nothing to echo, nothing generated
    ],
)
def test_request_id_headers_match_reference(plain, sent, expected):
    for server in plain:
        response = server.request("GET", "/", headers=sent)
        got = tuple(response.headers.get(h) for h in ("x-request-id", "x-ms-request-id", "x-ms-client-request-id"))
        if expected[0] == GENERATED:
            assert uuid.UUID(got[0]), server.name
        want = tuple(got[0] if value == GENERATED else value for value in expected)
        assert got == want, server.name


def test_too_long_request_id_is_refused_alike(plain):
    ours, reference = (s.request("GET", "/", headers={"x-request-id": "x" * 101}) for s in plain)
    assert visible(ours) == visible(reference)
    assert ours.status == 431


def test_a_refused_client_id_still_gets_its_request_id_back(plain):
    sent = {"x-request-id": "r-1", "x-ms-client-request-id": "c" * 101}
    ours, reference = (s.request("GET", "/", headers=sent) for s in plain)
    assert visible(ours) == visible(reference) and ours.status == 431
    for response in (ours, reference):
        assert response.headers.get("x-request-id") == "r-1" and "x-ms-request-id" not in response.headers


def test_trace_id_is_echoed_alike(plain):
    ours, reference = (s.request("POST", "/score", b"{}", {**JSON, "TraceId": "t-1"}) for s in plain)
    assert ours.headers.get("traceid") == reference.headers.get("traceid") == "t-1"


def raw_request(server, lines: list[str], body: bytes = b"") -> bytes:
    """A request as written, for what http.client will not send (a header given three times)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            ("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        )
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_repeated_header_reaches_run_as_the_reference_joins_it(headers_script):
    lines = ["POST /score HTTP/1.1", "Host: x", "X-Custom: 1", "X-Custom: 2", "x-custom: 3", "Content-Type: text/plain"]
    ours, reference = (raw_request(s, lines, b"hi") for s in headers_script)
    for raw in (ours, reference):
        assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b'{"custom": "1,2,3", "body": "hi"}'), raw


def test_exec_time_header_is_a_number(plain):
    ours = plain[0].request("POST", "/score", b'{"a": 1}', JSON)
    assert float(ours.headers["x-ms-run-fn-exec-ms"]) >= 0
    assert (
        ours.headers["x-ms-run-fn-exec-ms"].count(".") == 1
        and len(ours.headers["x-ms-run-fn-exec-ms"].split(".")[1]) == 3
    )


SCHEMA_CASES = [
    ("named args", "POST", "/score", b'{"data": [[1, 2], [3, 4]], "scale": 2}', JSON),
    ("default arg", "POST", "/score", b'{"data": [[1, 2]]}', JSON),
    ("missing arg", "POST", "/score", b'{"scale": 2}', JSON),
    ("not a dict", "POST", "/score", b"[1, 2]", JSON),
    ("not json", "POST", "/score", b"{oops", JSON),
    ("empty", "POST", "/score", b"", JSON),
    ("wrong content type", "POST", "/score", b'{"data": [[1]]}', {"Content-Type": "text/plain"}),
    ("GET with args", "GET", "/score?data=[[1,2]]&scale=3", None, {}),
    ("swagger 2", "GET", "/swagger.json", None, {}),
    ("swagger 3", "GET", "/swagger.json?version=3", None, {}),
]


@pytest.mark.parametrize("name, method, path, body, headers", SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_inference_schema_script_matches_reference(schema, name, method, path, body, headers):
    ours, reference = (server.request(method, path, body, headers) for server in schema)
    assert visible(ours) == visible(reference)
    if name == "named args":
        assert json.loads(ours.body) == [6.0, 14.0]
    if name.startswith("swagger"):
        document = json.loads(ours.body)
        definitions = document.get("definitions") or document["components"]["schemas"]
        assert definitions["ServiceInput"]["properties"]["data"]["type"] == "array"


def test_request_headers_parameter_matches_reference(headers_script):
    responses = [
        s.request("POST", "/score", b"hi", {"X-Custom": "v1", "Content-Type": "text/plain"}) for s in headers_script
    ]
    assert visible(responses[0]) == visible(responses[1])
    assert json.loads(responses[0].body) == {"custom": "v1", "body": "hi"}


def test_helper_module_next_to_the_script_is_importable(helper):
    ours, reference = (s.request("POST", "/score", b"abcd", JSON) for s in helper)
    assert visible(ours) == visible(reference)
    assert ours.body == b"8"


def test_failing_init_stops_both_servers(tmp_path):
    for kind in ("ours", "reference"):
        server = start(kind, SCRIPTS / "failing_init.py", tmp_path, wait=False)
        code = server.process.wait(60)
        log = server.log.read_text()
        assert code != 0, f"{kind} kept running after init() failed"
        assert "model file is missing" in log
    assert (
        "init() of the entry script"
        in (tmp_path / next(p.name for p in tmp_path.iterdir() if p.name.startswith("ours-"))).read_text()
    )


@pytest.fixture(scope="module", params=["http://example.com,http://b.org", "*"])
def cors(request, tmp_path_factory):
    yield from pair(SCRIPTS / "plain.py", tmp_path_factory, {"AML_CORS_ORIGINS": request.param})


CORS_HEADERS = ("access-control-allow-origin", "access-control-allow-headers", "access-control-allow-methods", "vary")
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, x-foo"}


@pytest.mark.parametrize(
    "method, path, headers",
    [
        ("OPTIONS", "/score", {"Origin": "http://example.com", **PREFLIGHT}),
        ("OPTIONS", "/score", {"Origin": "http://evil.com", **PREFLIGHT}),
        ("POST", "/score", {"Origin": "http://example.com", **JSON}),
        ("POST", "/score", {"Origin": "http://evil.com", **JSON}),
        ("POST", "/score", JSON),
        ("GET", "/", {"Origin": "http://b.org"}),
        ("GET", "/swagger.json", {"Origin": "http://example.com"}),
    ],
    ids=["preflight", "preflight other origin", "POST", "POST other origin", "no origin", "health", "swagger"],
)
def test_cors_matches_reference(cors, method, path, headers):
    body = b'{"a": 1}' if method == "POST" else None
    ours, reference = (s.request(method, path, body, headers) for s in cors)
    assert visible(ours) == visible(reference)
    assert {h: ours.headers.get(h) for h in CORS_HEADERS} == {h: reference.headers.get(h) for h in CORS_HEADERS}


def test_without_cors_origins_no_cors_headers(plain):
    ours = plain[0].request("OPTIONS", "/score", None, {"Origin": "http://example.com", **PREFLIGHT})
    assert not [h for h in ours.headers if h.startswith("access-control-")]


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory):
    yield from pair(SCRIPTS / "plain.py", tmp_path_factory, {"SERVICE_PATH_PREFIX": "api"})


@pytest.mark.parametrize(
    "method, path",
    [
        ("POST", "/score"),
        ("POST", "/api/score"),
        ("GET", "/api/"),
        ("GET", "/swagger.json"),
        ("GET", "/api/swagger.json"),
    ],
)
def test_the_path_prefix_shows_in_swagger_only_as_on_the_reference(prefixed, method, path):
    body = b'{"a": 1}' if method == "POST" else None
    ours, reference = (s.request(method, path, body, JSON if body else {}) for s in prefixed)
    assert visible(ours) == visible(reference)
    if path == "/swagger.json":
        assert "/api/score" in json.loads(ours.body)["paths"]
