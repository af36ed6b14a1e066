"""Every golden Dockerfile is clean under hadolint (defaults, no ignores) and parses with BuildKit's parser."""

from __future__ import annotations

from pathlib import Path

import pytest
from lint import assert_clean, hadolint

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
DOCKERFILES = sorted(GOLDEN.glob("*/Dockerfile"))


def test_there_are_golden_dockerfiles_to_lint():
    assert len(DOCKERFILES) >= 4


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.parent.name for p in DOCKERFILES])
def test_golden_dockerfile_is_lint_clean(dockerfile):
    assert_clean(dockerfile)


def test_hadolint_does_find_problems(tmp_path):
    """The linter really runs: a known-bad Dockerfile fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install flask\nCMD python app.py\n")
    result = hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3003", "DL3013", "DL3025"):
        assert rule in result.stdout
