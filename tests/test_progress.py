"""Progress bars for long byte work: on a terminal, and never in a pipe or with --quiet."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

BIG = 110 * 1000 * 1000  # just over the 100 MB threshold


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("progress")
    with open(folder / "big.bin", "wb") as handle:
        handle.truncate(BIG)  # sparse: the bytes are real to every reader, cheap to make
    (folder / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    return folder


def run(project, *args, terminal: bool):
    """bundler ARGS with stderr on a pseudo-terminal (as at a desk) or a pipe; (code, stdout, stderr)."""
    env = {**os.environ, "BUNDLER_HOME": str(project / "registry"), "COLUMNS": "100"}
    argv = [sys.executable, "-m", "bundler", *args]
    if not terminal:
        done = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True)
        return done.returncode, done.stdout, done.stderr
    leader, follower = pty.openpty()
    process = subprocess.Popen(argv, cwd=project, env=env, stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not data:
            break
        chunks.append(data)
    stdout = process.stdout.read()
    process.wait()
    os.close(leader)
    return process.returncode, stdout, b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize(
    "args, label",
    [
        (("register", "big.bin", "--name", "big"), "registering"),
        (("save", "out", "--model", "big", "--entry-script", "score.py"), "saving"),
        (("verify", "out"), "verifying"),
        (("pack", "out", "-o", "out.tar"), "packing"),
        (("verify", "out.tar"), "verifying"),
    ],
)
def test_a_terminal_shows_bytes_rate_and_time_left_a_pipe_nothing(project, args, label):
    code, stdout, stderr = run(project, *args, terminal=True)
    assert code == 0, stdout + stderr
    assert label in stderr and "MB of 110." in stderr and "B/s" in stderr and "100%" in stderr, stderr[-500:]
    assert stderr.count("\r") < 200  # redrawn a few times a second, not once per read
    quiet_code, _, quiet_err = run(project, "--quiet", *args, terminal=True)
    assert quiet_code == 0 and label not in quiet_err and "B/s" not in quiet_err
    piped_code, _, piped_err = run(project, *args, terminal=False)
    assert piped_code == 0 and label not in piped_err and "B/s" not in piped_err


def test_a_small_job_shows_nothing_even_on_a_terminal(project):
    (project / "small.bin").write_bytes(b"x" * 1000)
    code, _, stderr = run(project, "register", "small.bin", "--name", "small", terminal=True)
    assert code == 0 and "registering" not in stderr


def test_save_ends_with_a_summary(project):
    code, stdout, _ = run(project, "save", "summary", "--model", "big", "--entry-script", "score.py", terminal=False)
    assert code == 0
    line = next(line for line in stdout.splitlines() if line.startswith("wrote "))
    assert line.startswith("wrote ") and " files (110.1 MB) to " in line and line.endswith(" s")


def test_vendoring_at_a_terminal_lets_pip_draw_its_download_bars(tmp_path, monkeypatch):
    """pip draws a bar per download (bytes, rate, time left) when bundler's bars are on; its
    errors still come back as one line, from its log file."""
    import subprocess as real_subprocess

    from bundler import progress, vendor

    calls = []

    def fake_run(command, **kwargs):
        calls.append((command, kwargs))
        log = command[command.index("--log") + 1]
        with open(log, "w") as handle:
            handle.write("2026-12-02T10:00:00 ERROR: No matching distribution found for nothing-here==1\n")
        return real_subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(vendor.subprocess, "run", fake_run)
    monkeypatch.setattr(progress, "_reporter", progress.terminal_bar)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("nothing-here==1\n")
    with pytest.raises(vendor.VendorError, match="No matching distribution found for nothing-here==1"):
        vendor.download((requirements,), "3.11", "linux/amd64", tmp_path / "wheels")
    ((command, kwargs),) = calls
    assert "--progress-bar" in command and "--quiet" not in command
    assert "stderr" not in kwargs and kwargs["stdout"] == real_subprocess.DEVNULL  # the bar reaches the terminal
