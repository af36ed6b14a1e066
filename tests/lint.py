"""Lint a Dockerfile the way the project promises: hadolint at its defaults, BuildKit's parser."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path


def hadolint_binary() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=sysconfig.get_path("scripts"))
    if not found:
        found = str(Path(sys.executable).with_name("hadolint"))
    return found


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    # --no-color: plain findings in the assertion message. No --ignore, no config file.
    return subprocess.run([hadolint_binary(), "--no-color", str(dockerfile)], capture_output=True, text=True)


def buildkit_instructions(dockerfile: Path) -> list[str]:
    import dockerfile as buildkit

    return [command.cmd for command in buildkit.parse_file(str(dockerfile))]


def assert_clean(dockerfile: Path) -> None:
    result = hadolint(dockerfile)
    assert result.returncode == 0, f"hadolint findings in {dockerfile}:\n{result.stdout}{result.stderr}"
    instructions = buildkit_instructions(dockerfile)
    assert instructions.count("FROM") == 2 and instructions[-1] == "CMD", instructions
