"""Download the image's Python wheels into the bundle, so `docker build` needs no network.

`bundler save --vendor` calls this (I/O, network) before planning; the plan then copies
the wheels into environment/wheels/ like any other file, and the Dockerfile installs with
`--no-index`. Wheels are chosen for the IMAGE's platform and Python, not this machine's:
manylinux wheels for glibc 2.36 (Debian bookworm, what python:*-slim images are built
on) and the configured Python version. Only wheels: a package that publishes only a
source distribution cannot be vendored, and the error says which.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bundler.errors import BundlerError

ARCHES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
GLIBC_MINOR = 36  # Debian bookworm


def platform_tags(platform: str) -> list[str]:
    """Every manylinux tag a glibc-2.36 image runs: pip does not widen manylinux_2_Y tags itself."""
    arch = ARCHES[platform]
    return [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 16, -1)] + [f"manylinux2014_{arch}"]


class VendorError(BundlerError):
    pass


def download(requirement_files: tuple[Path, ...], python: str, platform: str, dest: Path) -> tuple[tuple[str, Path], ...]:
    """pip-download every requirement (and its dependencies) as wheels into dest."""
    command = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
        "--only-binary=:all:", "--implementation", "cp", "--python-version", python,
        "--dest", str(dest),
    ]
    for tag in platform_tags(platform):
        command += ["--platform", tag]
    for path in requirement_files:
        command += ["--requirement", str(path)]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
    except OSError as exc:
        raise VendorError(f"cannot run pip to vendor wheels: {exc}") from exc
    if result.returncode != 0:
        detail = _last_error_line(result.stderr) or f"pip exited with {result.returncode}"
        raise VendorError(
            f"vendoring wheels for Python {python} on {platform} failed: {detail}; "
            "pin versions that publish wheels, or save without --vendor"
        )
    return tuple(sorted((p.name, p) for p in dest.iterdir() if p.suffix == ".whl"))


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip().startswith("ERROR:")]
    return lines[-1][len("ERROR:"):].strip() if lines else ""
