"""What a command imports is what it costs to start: `bundler --help` must not pay for the
core (benchmarks/save_speed.py times it against importing click alone)."""

from __future__ import annotations

import subprocess
import sys

LOADED_AFTER = """
import sys
from bundler.cli import main
sys.argv = ["bundler", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
sys.stderr.write(" ".join(sorted(sys.modules)))
"""


def modules_loaded_by(*argv: str) -> set[str]:
    """The modules a command loads beyond what this interpreter loads for nothing at all."""
    baseline = subprocess.run(
        [sys.executable, "-c", "import sys; sys.stderr.write(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr.split()
    loaded = subprocess.run(
        [sys.executable, "-c", LOADED_AFTER, *argv], capture_output=True, text=True, check=True
    ).stderr.split()
    return set(loaded) - set(baseline)


def test_help_loads_click_and_the_command_line_only():
    loaded = modules_loaded_by("--help")
    assert "click" in loaded and "bundler.cli" in loaded  # the measurement sees imports at all
    heavy = {"pathlib", "jinja2", "tomllib", "hashlib", "tempfile"}
    assert not loaded & heavy, sorted(loaded & heavy)
    assert sorted(m for m in loaded if m.startswith("bundler.")) == ["bundler.cli"]
