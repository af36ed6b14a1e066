"""Helpers for the container tests: run the CLI, talk HTTP on loopback, serve an image."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request

import engine as engines

REPO = engines.REPO
MEASUREMENTS: dict[str, str] = {}  # printed in pytest's terminal summary


def bundler(*args, cwd, home, check=True):
    env = {**os.environ, "BUNDLER_HOME": str(home)}
    result = subprocess.run(
        [sys.executable, "-m", "bundler", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True
    )
    if check:
        assert result.returncode == 0, f"bundler {' '.join(map(str, args))}:\n{result.stdout}\n{result.stderr}"
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(method, port, path="/", body=None, headers=None, timeout=10):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return response.status, response.read()


@contextlib.contextmanager
def serving(engine, tag, env=None):
    """Start the image's own command on a free port; yield (running, port) once healthy."""
    port = free_port()
    running = engine.start(tag, {"BUNDLER_PORT": str(port), **(env or {})})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if http("GET", port)[0] == 200:
                    break
            except OSError:
                pass
            if running.process is not None and running.process.poll() is not None:
                raise AssertionError(f"the container's command exited:\n{running.process.stdout.read()}")
            assert time.monotonic() < deadline, "the container never became healthy"
            time.sleep(0.2)
        yield running, port
    finally:
        running.stop()
