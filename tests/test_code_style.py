"""The project's own code passes ruff (lint and format check, configured in pyproject.toml),
so a `noqa` marker means something: RUF100 reports one that no longer silences anything."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def ruff(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    found = shutil.which("ruff", path=sysconfig.get_path("scripts")) or shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: pip install -e '.[test]'")
    return subprocess.run([found, *args], cwd=cwd, capture_output=True, text=True)


def test_ruff_lint_passes():
    result = ruff("check", "--output-format", "concise", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_check_passes():
    result = ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_does_find_problems(tmp_path):
    """The checks really run with the project's settings: an unused import and a misformatted line fail."""
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    (tmp_path / "bad.py").write_text("import os\nx = {'a':1}\n")
    assert "F401" in ruff("check", "--output-format", "concise", ".", cwd=tmp_path).stdout
    assert ruff("format", "--check", ".", cwd=tmp_path).returncode != 0
