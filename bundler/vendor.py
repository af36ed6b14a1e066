"""Download the image's Python wheels into the bundle, so `docker build` needs no network.

`bundler save --vendor` calls this (I/O, network) after planning: it runs `pip download`
for each install step of the plan's environment build, with the same requirement files in
the same runs as the image (hashed requirements apart), and returns the wheels as bundle
files under environment/wheels/; the Dockerfile installs them with `--no-index`. Wheels
are chosen for the IMAGE's platform and Python, not this machine's: manylinux wheels for
glibc 2.36 (Debian bookworm, what python:*-slim images are built on) and the configured
Python version. Only wheels: a package that publishes only a
source distribution cannot be vendored, and the error says which.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bundler import layout
from bundler.entries import Copied, FileEntry, Generated
from bundler.errors import BundlerError
from bundler.plan import Plan

ARCHES = {"linux/amd64": "x86_64", "linux/arm64": "aarch64"}
GLIBC_MINOR = 36  # Debian bookworm


def platform_tags(platform: str) -> list[str]:
    """Every manylinux tag a glibc-2.36 image runs: pip does not widen manylinux_2_Y tags itself."""
    arch = ARCHES[platform]
    return [f"manylinux_2_{minor}_{arch}" for minor in range(GLIBC_MINOR, 16, -1)] + [f"manylinux2014_{arch}"]


class VendorError(BundlerError):
    pass


def wheels_for(plan: Plan, scratch: Path) -> tuple[FileEntry, ...]:
    """Every wheel the plan's install steps need, downloaded into scratch, as bundle files."""
    environment = plan.image.environment
    if environment.kind != "pip":
        raise VendorError(f"--vendor does not know the {environment.kind} builder yet; save without --vendor")
    planned = {entry.path: entry for entry in plan.files}
    wheel_dir = scratch / "wheels"
    for step in environment.steps:
        files = tuple(_on_disk(planned[f.bundle_path], scratch) for f in step.requirements)
        download(files, environment.python, environment.platform, wheel_dir)
    wheels = sorted(p for p in wheel_dir.iterdir() if p.suffix == ".whl") if wheel_dir.is_dir() else []
    return tuple(FileEntry(f"{layout.WHEELS_DIR}/{p.name}", layout.FILE_MODE, Copied(p)) for p in wheels)


def _on_disk(entry: FileEntry, scratch: Path) -> Path:
    """A requirements file pip can read: the user's own (its includes resolve beside it), or
    a file bundler derived, written to scratch."""
    if isinstance(entry.content, Generated):
        path = scratch / "derived" / entry.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(entry.content.data)
        return path
    return entry.content.path


def download(requirement_files: tuple[Path, ...], python: str, platform: str, dest: Path) -> None:
    """pip-download every requirement (and its dependencies) as wheels into dest."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        "--quiet",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python,
        "--dest",
        str(dest),
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


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip().startswith("ERROR:")]
    return lines[-1][len("ERROR:") :].strip() if lines else ""
