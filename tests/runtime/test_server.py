"""Production behaviour of our runtime: keep-alive, body limit, graceful SIGTERM, access log,
worker count, health check, and no writes outside /tmp."""

from __future__ import annotations

import errno
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from servers import RUNTIME_DIR, SCRIPTS, start

JSON = {"Content-Type": "application/json"}


def test_keep_alive_serves_many_requests_on_one_connection(tmp_path):
    server = start("ours", SCRIPTS / "plain.py", tmp_path)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for i in range(3):
            conn.request("POST", "/score", body=f'{{"n": {i}}}', headers=JSON)
            response = conn.getresponse()
            assert response.status == 200 and response.read()
            assert response.getheader("connection", "keep-alive").lower() != "close"
        assert conn.sock is not None  # never reconnected
        conn.close()
    finally:
        server.stop()


def test_request_body_limit_gives_413(tmp_path):
    server = start("ours", SCRIPTS / "plain.py", tmp_path, {"BUNDLER_MAX_REQUEST_BYTES": "100"})
    try:
        small = server.request("POST", "/score", b'{"a": 1}', JSON)
        big = server.request("POST", "/score", b'{"a": "' + b"x" * 200 + b'"}', JSON)
        assert small.status == 200
        assert big.status == 413 and b"limit of 100 bytes" in big.body
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.putrequest("POST", "/score")  # chunked: no Content-Length to refuse up front
        conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Content-Type", "application/json")
        conn.endheaders()
        payload = b"x" * 300
        conn.send(f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n")
        assert conn.getresponse().status == 413
        assert server.request("GET", "/").status == 200  # still serving
    finally:
        server.stop()


def test_sigterm_drains_the_request_in_flight(tmp_path):
    server = start("ours", SCRIPTS / "plain.py", tmp_path)
    result = {}

    def slow_request():
        result["response"] = server.request("POST", "/score", b'{"sleep": 2}', JSON)

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    thread.join(30)
    assert result["response"].status == 200 and result["response"].body == b'"slept"'
    assert server.process.wait(30) == 0


def test_one_access_log_line_per_request(tmp_path):
    server = start("ours", SCRIPTS / "plain.py", tmp_path)
    try:
        for request_id in ("req-a", "req-b", "req-c"):
            server.request("POST", "/score", b'{"a": 1}', {**JSON, "x-request-id": request_id})
    finally:
        server.stop()
    lines = [line for line in server.log.read_text().splitlines() if '"POST /score' in line]
    assert len(lines) == 3
    assert [re.search(r"x-request-id=(\S+)", line).group(1) for line in lines] == ["req-a", "req-b", "req-c"]
    assert all(" 200 " in line for line in lines)


def test_the_access_log_line_says_who_what_status_bytes_time_and_request_id(tmp_path):
    server = start("ours", SCRIPTS / "plain.py", tmp_path)
    try:
        body = server.request("POST", "/score?x=1", b'{"string": "abc"}', {**JSON, "x-request-id": "r-1"}).body
        server.request("HEAD", "/", b"", {"x-request-id": "r-2"})
        server.request("GET", "/nowhere", b"", {})
    finally:
        server.stop()
    log = server.log.read_text()
    assert f'127.0.0.1 "POST /score?x=1 HTTP/1.1" 200 {len(body)} ' in log
    assert re.search(r'^127\.0\.0\.1 "POST /score\?x=1 HTTP/1\.1" 200 5 \d+ms x-request-id=r-1$', log, re.M)
    assert re.search(r'^127\.0\.0\.1 "HEAD / HTTP/1\.1" 200 0 \d+ms x-request-id=r-2$', log, re.M)
    assert re.search(r'^127\.0\.0\.1 "GET /nowhere HTTP/1\.1" 404 \d+ \d+ms x-request-id=[0-9a-f-]{36}$', log, re.M)


def test_each_worker_runs_init_once(tmp_path):
    server = start("ours", SCRIPTS / "plain.py", tmp_path, {"BUNDLER_WORKERS": "2"})
    try:
        log = server.log.read_text()
        for _ in range(50):
            log = server.log.read_text()
            if log.count("Invoking init()") == 2:
                break
            time.sleep(0.1)
        assert log.count("Invoking init()") == 2
    finally:
        server.stop()


def test_workers_boot_without_the_collector_then_serve_with_it(tmp_path):
    # Booting without gc is only a speed-up; serving or init() without it would leak cycles.
    server = start("ours", SCRIPTS / "gc_state.py", tmp_path, {"BUNDLER_WORKERS": "2"})
    try:
        seen = [server.request("POST", "/score", b"{}", JSON) for _ in range(4)]
    finally:
        server.stop()
    for response in seen:
        assert response.status == 200
        state = json.loads(response.body)
        assert state["at_import"] is False
        assert state["in_init"] is True and state["in_run"] is True
        assert state["frozen"] > 10_000  # the boot's objects: the master's and the imports'


def test_no_writes_outside_tmp(tmp_path):
    """The app root, the runtime and HOME stay untouched: the image works with a read-only root."""
    app_root = tmp_path / "app"
    app_root.mkdir()
    (app_root / "plain.py").write_text((SCRIPTS / "plain.py").read_text())
    before = {p: p.stat().st_mtime_ns for p in list(app_root.rglob("*")) + list(RUNTIME_DIR.rglob("*"))}
    server = start("ours", app_root / "plain.py", tmp_path)
    try:
        assert server.request("POST", "/score", b'{"a": 1}', JSON).status == 200
    finally:
        server.stop()
    after = {p: p.stat().st_mtime_ns for p in list(app_root.rglob("*")) + list(RUNTIME_DIR.rglob("*"))}
    assert after == before
    assert not any((tmp_path / "home").iterdir()), "something was written under HOME"
    assert not any(p.name == "__pycache__" for p in app_root.rglob("*"))


def test_healthcheck_exit_codes(tmp_path):
    server = start("ours", SCRIPTS / "plain.py", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(RUNTIME_DIR), "BUNDLER_PORT": str(server.port)}
    check = [sys.executable, "-m", "bundler_runtime.healthcheck"]
    try:
        assert subprocess.run(check, env=env, capture_output=True).returncode == 0
    finally:
        server.stop()
    down = subprocess.run(check, env=env, capture_output=True, text=True)
    assert down.returncode == 1 and "unhealthy" in down.stderr


@pytest.mark.parametrize("setting", ["BUNDLER_PORT=abc", "BUNDLER_WORKERS=0"])
def test_bad_settings_stop_with_a_clear_line(tmp_path, setting):
    name, value = setting.split("=")
    env = {
        **os.environ,
        "PYTHONPATH": str(RUNTIME_DIR),
        "AML_APP_ROOT": str(SCRIPTS),
        "AZUREML_ENTRY_SCRIPT": "plain.py",
        name: value,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bundler_runtime"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert f"bad server setting: {name}={value!r}" in done.stderr


@pytest.mark.reference
def test_the_reference_engine_takes_the_same_settings(tmp_path):
    # engine = "azureml": the image's CMD is this launcher, so `docker run --env BUNDLER_PORT=...`
    # moves the reference server and the health check together.
    from servers import free_port, require_reference

    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BUNDLER_", "AZUREML_", "AML_"))},
        "PATH": f"{require_reference().parent}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(RUNTIME_DIR),
        "AML_APP_ROOT": str(SCRIPTS),
        "AZUREML_ENTRY_SCRIPT": "plain.py",
        "AZUREML_MODEL_DIR": str(tmp_path),
        "BUNDLER_PORT": str(port),
        "BUNDLER_SCORING_TIMEOUT": "1.5",
        "HOME": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bundler_runtime.reference"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        check = [sys.executable, "-m", "bundler_runtime.healthcheck"]
        deadline = time.monotonic() + 60
        while subprocess.run(check, env=env, capture_output=True).returncode != 0:
            assert process.poll() is None and time.monotonic() < deadline, "the reference server did not come up"
            time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/score", body=b'{"sleep": 5}', headers=JSON)
        response = conn.getresponse()
        assert response.status == 500 and json.loads(response.read()) == {"message": "Scoring timeout after 1500 ms"}
    finally:
        process.terminate()
        process.wait(30)


def test_the_reference_launcher_maps_every_setting(monkeypatch):
    monkeypatch.syspath_prepend(str(RUNTIME_DIR))
    from bundler_runtime.reference import command

    argv, env = command(
        {
            "AML_APP_ROOT": "/app",
            "AZUREML_ENTRY_SCRIPT": "sub/score.py",
            "BUNDLER_PORT": "9123",
            "BUNDLER_WORKERS": "3",
            "BUNDLER_SCORING_TIMEOUT": "2.5",
            "PYTHONPATH": "/opt/bundler/runtime",
        }
    )
    assert argv == ["azmlinfsrv", "--entry_script", "/app/sub/score.py", "--port", "9123"]
    assert (env["WORKER_COUNT"], env["SCORING_TIMEOUT_MS"]) == ("3", "2500")
    assert env["PYTHONPATH"] == "/opt/bundler/runtime"  # nothing put ahead of the standard library


@pytest.mark.parametrize("status", [3, 4, 1])
def test_a_worker_that_exits_after_booting_is_replaced_whatever_its_status(tmp_path, status):
    """gunicorn halts on a worker exit status of 3 or 4 (its "could not boot"); os._exit(3)
    in run() must cost that request, never the server."""
    server = start("ours", SCRIPTS / "plain.py", tmp_path)
    try:
        with pytest.raises((OSError, http.client.HTTPException)):
            server.request("POST", "/score", json.dumps({"os_exit": status}).encode(), JSON)
        deadline = time.monotonic() + 30
        while True:
            assert server.process.poll() is None, server.log.read_text()
            try:
                if server.request("POST", "/score", b'{"n": 1}', JSON).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.1)
        assert "Worker failed to boot" not in server.log.read_text()
    finally:
        server.stop()


def test_a_body_cut_short_by_the_client_never_reaches_run(tmp_path):
    server = start("ours", SCRIPTS / "plain.py", tmp_path)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(
                b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"record": "short"}'
            )
            sock.shutdown(socket.SHUT_WR)  # the client goes away with 80 bytes unsent
            sock.recv(1024)
        assert server.request("POST", "/score", b'{"record": "whole"}', JSON).status == 200
        assert (tmp_path / "calls.log").read_text() == '{"record": "whole"}\n'
    finally:
        server.stop()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass  # gone meanwhile
    return found


def test_a_burst_of_connections_waits_in_the_listening_queue_gunicorn_configured(tmp_path):
    """asyncio's create_server shortened the listening queue to 100: while the worker was busy,
    the 101st connection of a burst was dropped and its client retried a second later. With
    the worker stopped, 300 connections must all be queued by the kernel, then all answered."""
    import selectors

    server = start("ours", SCRIPTS / "plain.py", tmp_path)
    body = b'{"string": "ok"}'
    request = b"POST /score HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n"
    request += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    selector = selectors.DefaultSelector()
    (worker,) = _children(server.process.pid)
    os.kill(worker, signal.SIGSTOP)
    try:
        for _ in range(300):
            connection = socket.socket()
            connection.setblocking(False)
            assert connection.connect_ex(("127.0.0.1", server.port)) in (0, errno.EINPROGRESS)
            selector.register(connection, selectors.EVENT_WRITE)
        queued = []
        deadline = time.monotonic() + 0.8  # before a dropped connection's client tries again (1 s)
        while selector.get_map() and time.monotonic() < deadline:
            for key, _ in selector.select(0.05):
                selector.unregister(key.fileobj)
                if key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    queued.append(key.fileobj)
        assert len(queued) == 300, f"the kernel queued {len(queued)} of 300 connections"
    finally:
        os.kill(worker, signal.SIGCONT)
        for key in list(selector.get_map().values()):
            key.fileobj.close()
    try:
        for connection in queued:
            connection.setblocking(True)
            connection.settimeout(30)
            connection.sendall(request)
        answers = []
        for connection in queued:
            response = http.client.HTTPResponse(connection)
            response.begin()
            answers.append((response.status, response.read()))
            connection.close()
    finally:
        server.stop()
    assert answers == [(200, b'"ok"')] * 300
