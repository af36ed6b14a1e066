"""Real parts for tests/containers/test_private_index.py, on 127.0.0.1, from the standard library:

- make_certificates: a CA and a server certificate it signs for IP 127.0.0.1 (openssl);
- make_wheel: a tiny pure-Python wheel, made by hand (METADATA, WHEEL, RECORD);
- PackageIndex: a PEP 503 simple index over HTTPS that answers 401 with a Basic challenge to
  every request without the right user and password, and records every request;
- ConnectProxy: an HTTP proxy that only tunnels (CONNECT), and records where to.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import re
import select
import socket
import socketserver
import ssl
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import local_tls


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signs for IP 127.0.0.1. Returns (ca, cert, key)."""
    return local_tls.make_certificates(folder, "bundler private index test CA")


def normalize(name: str) -> str:
    """PEP 503's normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def make_wheel(folder: Path, name: str, version: str, module: str, source: str) -> Path:
    """A pure-Python wheel of one module (module/__init__.py holding SOURCE), made by hand."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{module}/__init__.py": source.encode(),
        f"{dist}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: bundler's private index probe\n"
        ).encode(),
        f"{dist}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: bundler-tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = f"{dist}.dist-info/RECORD"
    lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(data)}")
    files[record] = ("\n".join([*lines, f"{record},,"]) + "\n").encode()
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


@dataclass
class Request:
    path: str
    credentials: bool  # an Authorization header was sent
    authorized: bool  # ... and it was the right one
    status: int


class _IndexHandler(http.server.BaseHTTPRequestHandler):
    server: _IndexServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        index = self.server.index
        sent = self.headers.get("Authorization")
        authorized = sent == index.authorization
        if not authorized:
            status, headers, body = 401, {"WWW-Authenticate": 'Basic realm="test"'}, b"401 Unauthorized\n"
        else:
            status, headers, body = index.answer(self.path)
        index.record(Request(self.path, sent is not None, authorized, status))
        self.send_response(status)
        content_type = "text/html; charset=utf-8"
        if status == 200 and self.path.endswith(".whl"):
            content_type = "application/octet-stream"
        for name, value in {"Content-Type": content_type, **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _IndexServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    index: PackageIndex

    def finish_request(self, request, client_address):
        # TLS here, in the request's own thread: a slow or failed handshake blocks no other client.
        try:
            request = self.index.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        super().finish_request(request, client_address)


class PackageIndex:
    """A PEP 503 simple index at https://127.0.0.1:PORT/simple/ serving WHEELS, behind HTTP
    Basic authentication on every path. Use as a context manager."""

    def __init__(self, wheels: list[Path], cert: Path, key: Path, user: str, password: str):
        self.wheels = {wheel.name: wheel for wheel in wheels}
        self.authorization = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server = _IndexServer(("127.0.0.1", 0), _IndexHandler)
        self._server.index = self
        self.port = self._server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}/simple"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> PackageIndex:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def seen(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def projects(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for name in self.wheels:
            found.setdefault(normalize(name.split("-")[0]), []).append(name)
        return found

    def answer(self, path: str) -> tuple[int, dict, bytes]:
        path = path.split("?")[0]
        if path in ("/simple", "/simple/"):
            links = "".join(f'<a href="/simple/{p}/">{p}</a>\n' for p in sorted(self.projects()))
            return 200, {}, f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n".encode()
        match = re.fullmatch(r"/simple/([^/]+)/?", path)
        if match:
            names = self.projects().get(normalize(match.group(1)))
            if names is None:
                return 404, {}, b"no such project\n"
            links = "".join(
                f'<a href="/files/{html.escape(n)}#sha256={hashlib.sha256(self.wheels[n].read_bytes()).hexdigest()}">'
                f"{html.escape(n)}</a>\n"
                for n in names
            )
            return 200, {}, f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n".encode()
        match = re.fullmatch(r"/files/([^/]+)", path)
        if match and match.group(1) in self.wheels:
            return 200, {}, self.wheels[match.group(1)].read_bytes()
        return 404, {}, b"not found\n"


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: _ProxyServer

    def handle(self):
        client = self.request
        client.settimeout(60)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
            if len(head) > 65536:
                return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, target, _ = (line.split(" ") + ["", ""])[:3]
        if method != "CONNECT":
            self.server.proxy.record(method, target)
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        self.server.proxy.record(method, target)
        host, _, port = target.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
        except (OSError, ValueError):
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        with upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            rest = head.split(b"\r\n\r\n", 1)[1]
            if rest:
                upstream.sendall(rest)
            _relay(client, upstream)


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    peers = {a: b, b: a}
    while True:
        readable, _, _ = select.select(list(peers), [], [], 120)
        if not readable:
            return
        for sock in readable:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                peers[sock].sendall(data)
            except OSError:
                return


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: ConnectProxy


class ConnectProxy:
    """An HTTP proxy on 127.0.0.1 that tunnels CONNECT requests and refuses everything else;
    `requests` lists (method, target) in the order they came. Use as a context manager."""

    def __init__(self):
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def record(self, method: str, target: str) -> None:
        with self._lock:
            self.requests.append((method, target))

    def seen(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.requests)
