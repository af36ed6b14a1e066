"""The registry under stress: killed registrations, concurrent ones, and corrupted blobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bundler.registry import ModelRef, Registry


def bundler(*args, cwd, home, **kwargs):
    env = {**os.environ, "BUNDLER_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "bundler", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, **kwargs
    )


def assert_every_version_whole(home: Path) -> None:
    registry = Registry(home)
    for name in registry.names():
        for version in registry.versions(name):
            record = json.loads((home / "models" / name / f"{version}.json").read_text())
            for entry in record["files"]:
                blob = registry.blob_path(entry["sha256"])
                assert blob.is_file() and blob.stat().st_size == entry["size"], f"{name}:{version} is partial"


def test_eight_concurrent_registers_get_eight_versions(tmp_path):
    (tmp_path / "m.bin").write_bytes(os.urandom(1 << 16))
    env = {**os.environ, "BUNDLER_HOME": str(tmp_path / "home")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bundler", "register", "m.bin", "--name", "race"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    printed = sorted(p.communicate()[0].strip() for p in processes)
    assert all(p.returncode == 0 for p in processes)
    assert printed == sorted(f"race:{n}" for n in range(1, 9))
    assert_every_version_whole(tmp_path / "home")


def test_register_killed_at_any_moment_leaves_no_half_version(tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as handle:
        for _ in range(200):
            handle.write(os.urandom(1 << 20))
    home = tmp_path / "home"
    env = {**os.environ, "BUNDLER_HOME": str(home)}
    for delay in (0.05, 0.2, 0.5, 0.9, 1.4):
        process = subprocess.Popen(
            [sys.executable, "-m", "bundler", "register", "big.bin", "--name", "big"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert_every_version_whole(home)
        listing = bundler("models", "list", cwd=tmp_path, home=home)
        assert listing.returncode == 0 and "Traceback" not in listing.stderr
    done = bundler("register", "big.bin", "--name", "big", cwd=tmp_path, home=home)
    assert done.returncode == 0
    versions = Registry(home).versions("big")
    assert done.stdout.strip() == f"big:{versions[-1]}"
    assert_every_version_whole(home)


@pytest.mark.parametrize("padding", [0, 17 << 20], ids=["small", "copied-by-the-kernel"])
def test_corrupted_blob_is_detected_at_save_and_nothing_is_written(tmp_path, padding):
    (tmp_path / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    (tmp_path / "m.bin").write_bytes(b"\0" * padding + b"the real weights")
    home = tmp_path / "home"
    assert bundler("register", "m.bin", "--name", "m", cwd=tmp_path, home=home).returncode == 0
    registry = Registry(home)
    blob = registry.resolve(ModelRef("m")).files[0]
    path = registry.blob_path(blob.sha256)
    os.chmod(path, 0o644)
    path.write_bytes(b"\0" * padding + b"the real weightz")  # same size, one byte flipped
    saved = bundler("save", "out", "--model", "m", "--entry-script", "score.py", cwd=tmp_path, home=home)
    assert saved.returncode == 1
    assert saved.stderr.count("\n") == 1 and "is corrupt" in saved.stderr and "register the model again" in saved.stderr
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundler-tmp-")]


def test_registering_again_repairs_a_corrupt_blob(tmp_path):
    """save says 'register the model again'; that must work, not reuse the corrupt blob."""
    (tmp_path / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    (tmp_path / "m.bin").write_bytes(b"the real weights")
    home = tmp_path / "home"
    registry = Registry(home)
    for damage in (
        lambda p: p.write_bytes(p.read_bytes() + b"junk"),  # appended bytes
        lambda p: p.write_bytes(b"the real weightz"),
    ):  # same size, one byte flipped
        assert bundler("register", "m.bin", "--name", "m", cwd=tmp_path, home=home).returncode == 0
        path = registry.blob_path(registry.resolve(ModelRef("m")).files[0].sha256)
        os.chmod(path, 0o644)
        damage(path)
        assert bundler("register", "m.bin", "--name", "m", cwd=tmp_path, home=home).returncode == 0
        assert path.read_bytes() == b"the real weights" and path.stat().st_mode & 0o777 == 0o444
        saved = bundler("save", "out", "--model", "m", "--entry-script", "score.py", cwd=tmp_path, home=home)
        assert saved.returncode == 0, saved.stderr
    assert not any((home / "tmp").iterdir())
