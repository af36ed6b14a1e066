"""What a test needs from this machine: skipped without it here, failed without it in CI."""

from __future__ import annotations

import os

import pytest


def require_root(why: str) -> None:
    """Skip a test that needs root, except in CI (which runs as root): there it fails instead."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why}, and CI must run every test: run it as root")
    pytest.skip(why)
