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
