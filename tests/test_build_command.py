"""`bundler build`: which engine it picks, what it runs, and the no-engine message."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest


def fake_tool(folder, name, info_exit=0):
    """A stand-in builder that records its arguments; `info` exits with info_exit."""
    path = folder / name
    path.write_text(
        f'#!/bin/sh\necho "$@" >> {folder / (name + ".calls")}\n'
        f'[ "$1" = info ] && exit {info_exit}\necho building with {name}\nexit 0\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def bundle(tmp_path, cli, monkeypatch):
    (tmp_path / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    (tmp_path / "m.bin").write_bytes(b"m")
    monkeypatch.chdir(tmp_path)
    cli("register", "m.bin", "--name", "Fraud")
    assert cli("save", "out", "--model", "Fraud", "--entry-script", "score.py").exit_code == 0
    return tmp_path / "out"


def run_build(bundle, bin_dir, *args):
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "bundler", "build", str(bundle), *args], env=env, capture_output=True, text=True
    )


def test_docker_with_an_engine_is_used(bundle, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tool(bin_dir, "docker")
    fake_tool(bin_dir, "podman")
    result = run_build(bundle, bin_dir, "-t", "myimage")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "built image: myimage"
    assert "building with docker" in result.stdout  # the builder's output streams through
    assert (bin_dir / "docker.calls").read_text().splitlines() == ["info", f"build --tag myimage {bundle}"]
    assert not (bin_dir / "podman.calls").exists()


def test_podman_when_docker_has_no_engine_and_default_tag(bundle, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_tool(bin_dir, "docker", info_exit=1)
    fake_tool(bin_dir, "podman")
    result = run_build(bundle, bin_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "built image: fraud"  # lower-cased model name
    # docker's image format: podman's default (OCI) would drop the HEALTHCHECK.
    assert (bin_dir / "podman.calls").read_text().splitlines() == [f"build --format docker --tag fraud {bundle}"]


def test_no_engine_is_one_clear_line(bundle, tmp_path):
    bin_dir = tmp_path / "empty-bin"
    bin_dir.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "bundler", "build", str(bundle)],
        env={**os.environ, "PATH": str(bin_dir)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "bundler: error: no image builder found: install Docker or podman, "
        "or copy the bundle to a machine that has one\n"
    )


def test_not_a_bundle(tmp_path):
    result = subprocess.run([sys.executable, "-m", "bundler", "build", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 1 and "is not a bundle" in result.stderr and "Traceback" not in result.stderr
