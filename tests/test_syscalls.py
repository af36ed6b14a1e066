"""bundler.syscalls: the Linux calls Python's os module lacks, and what each does without them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bundler import syscalls


def test_exchange_swaps_two_folders_in_one_step(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "from-a").touch()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "from-b").touch()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert syscalls.exchange(fd, "a", "b")
        with pytest.raises(FileNotFoundError):  # save retries on exactly this: dest moved aside
            syscalls.exchange(fd, "a", "missing")
    finally:
        os.close(fd)
    assert os.listdir(tmp_path / "a") == ["from-b"] and os.listdir(tmp_path / "b") == ["from-a"]


def test_without_the_c_function_each_says_so_or_does_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(syscalls, "_lookup", lambda name, *argtypes: (None, None))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert syscalls.exchange(fd, "a", "b") is False
        assert syscalls.sync_file_system(fd) is False
        syscalls.start_writeback(fd, 0, 1)
        assert syscalls.dying_with_parent(15) is None
    finally:
        os.close(fd)


def test_sync_file_system_flushes_a_real_file_system(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert syscalls.sync_file_system(fd)
    finally:
        os.close(fd)


def test_start_writeback_past_4_gib_and_on_a_pipe_raises_nothing(tmp_path):
    with open(tmp_path / "big", "wb") as file:
        file.truncate(6 << 30)  # sparse
        syscalls.start_writeback(file.fileno(), 5 << 30, 1 << 20)
    read_end, write_end = os.pipe()
    try:
        syscalls.start_writeback(write_end, 0, 1)  # ESPIPE: a hint, ignored
    finally:
        os.close(read_end), os.close(write_end)


def test_a_child_dying_with_its_parent_is_stopped_when_the_parent_dies():
    parent = (
        "import signal, subprocess, sys\n"
        "from bundler import syscalls\n"
        "child = subprocess.Popen(['sleep', '60'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,\n"
        "                         preexec_fn=syscalls.dying_with_parent(signal.SIGTERM))\n"
        "print(child.pid, flush=True)\n"
    )
    pid = int(subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, check=True).stdout)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped by whoever adopted it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
