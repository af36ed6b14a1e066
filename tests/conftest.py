"""Shared fixtures: an isolated registry home, and a CLI runner that never touches ~/.bundler."""

from __future__ import annotations

import pytest
from click.testing import CliRunner


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own registry; nothing reads or writes the real ~/.bundler."""
    home = tmp_path_factory.mktemp("bundler-home")
    monkeypatch.setenv("BUNDLER_HOME", str(home))
    return home


@pytest.fixture
def cli(isolated_home):
    from bundler.cli import main

    runner = CliRunner()

    def invoke(*args, **kwargs):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke


ENTRY_SCRIPT = "def init():\n    pass\ndef run(raw):\n    return raw\n"


@pytest.fixture
def project(tmp_path, cli, monkeypatch):
    """A folder with score.py and m.bin registered as m:1; the current directory for the test."""
    (tmp_path / "score.py").write_text(ENTRY_SCRIPT)
    (tmp_path / "m.bin").write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    assert cli("register", "m.bin", "--name", "m").exit_code == 0
    return tmp_path


@pytest.fixture
def engine_bin(tmp_path, monkeypatch):
    """A PATH whose docker and podman are recording stand-ins (tests/fake_engine.py)."""
    import fake_engine

    folder = fake_engine.install(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    return folder
