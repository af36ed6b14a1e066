"""The README's path from its first command to a scored request works as written: the
first command (a fresh venv, `pip install .`, train, register, save) and then the
"Try it here first" block, run by bash in a copy of the repository, end in a prediction."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def first_command() -> str:
    block = README.split("Set up and run the main job on the bundled example", 1)[1]
    return next(line.strip() for line in block.splitlines() if line.startswith("    "))


def walkthrough() -> str:
    block = README.split("<!-- walkthrough:", 1)[1].split("\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines)


def test_the_readme_blocks_are_found():
    assert "bundler save ./imagefiles" in first_command()
    assert "bundler serve imagefiles &" in walkthrough() and "/score" in walkthrough()


def test_the_readme_path_ends_in_a_prediction(tmp_path):
    copy = tmp_path / "bundler"
    shutil.copytree(
        REPO,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "imagefiles", "model.pkl", ".ruff_cache", ".pytest_cache"
        ),
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(BUNDLER_HOME=str(tmp_path / "registry"), PATH=re.sub(r"[^:]*\.venv/bin:?", "", env["PATH"]))
    script = f"set -euo pipefail\n{first_command()}\n{walkthrough()}\n"
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=copy,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=900)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the server, if the block stopped before `kill $!`
        except ProcessLookupError:
            pass
    assert process.returncode == 0, err[-3000:]
    # curl's answer has no newline of its own, and the server logs to the same output.
    answers = [line for line in out.splitlines() if line.startswith("[")]
    prediction, _ = json.JSONDecoder().raw_decode(answers[-1])
    assert len(prediction) == 2 and all(isinstance(value, float) for value in prediction)
