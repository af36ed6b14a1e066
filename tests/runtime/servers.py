"""Start our runtime or the reference server on a free loopback port, for the runtime tests."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cache_dir import CACHE

REPO = Path(__file__).resolve().parents[2]
RUNTIME_DIR = REPO / "bundler" / "runtime"
SCRIPTS = Path(__file__).resolve().parent / "scripts"
REFERENCE_BIN = Path(os.environ.get("BUNDLER_REFERENCE_SERVER", CACHE / "azmlinfsrv-venv" / "bin" / "azmlinfsrv"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_reference() -> Path:
    """The reference server's command; in CI its absence fails the test instead of skipping it."""
    if REFERENCE_BIN.exists():
        return REFERENCE_BIN
    message = f"reference server not installed at {REFERENCE_BIN}: run .ci/setup-reference-server.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Response:
    status: int
    headers: dict  # lower-case names
    body: bytes


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    log: Path

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            raw = conn.getresponse()
            return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw.read())
        finally:
            conn.close()

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start(kind: str, script: Path, tmp_path: Path, env_extra: dict | None = None, wait: bool = True) -> Server:
    port = free_port()
    app_root = script.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUNDLER_", "AZUREML_", "AML_"))}
    env.update(AML_APP_ROOT=str(app_root), AZUREML_MODEL_DIR=str(tmp_path), HOME=str(tmp_path / "home"))
    (tmp_path / "home").mkdir(exist_ok=True)
    if kind == "ours":
        env.update(
            PYTHONPATH=str(RUNTIME_DIR),
            AZUREML_ENTRY_SCRIPT=script.name,
            BUNDLER_PORT=str(port),
            BUNDLER_HOST="127.0.0.1",
            **(env_extra or {}),
        )
        command = [sys.executable, "-m", "bundler_runtime"]
    else:
        env.update(**(env_extra or {}))
        command = [str(require_reference()), "--entry_script", str(script), "--port", str(port)]
    log = tmp_path / f"{kind}-{script.stem}-{port}.log"
    with open(log, "wb") as output:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(command, env=env, cwd=str(tmp_path), stdout=output, stderr=subprocess.STDOUT)
    server = Server(kind, port, process, log)
    if wait:
        wait_healthy(server)
    return server


def wait_healthy(server: Server, timeout: float = 60) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if server.process.poll() is not None:
            raise AssertionError(f"{server.name} exited with {server.process.returncode}:\n{server.log.read_text()}")
        try:
            if server.request("GET", "/").status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{server.name} not healthy after {timeout}s:\n{server.log.read_text()}")
