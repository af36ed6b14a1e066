"""Download the image's Python wheels into the bundle, so `docker build` needs no network.

`bundler save --vendor` calls this (I/O, network) after planning: it runs `pip download`
for each pip step of the plan's environment build, with the same requirement files in the
same runs as the image (hashed requirements apart), and returns the wheels as bundle files
under environment/wheels/; the Dockerfile installs them with `--no-index`. For the conda
builder, conda_vendor.py solves the conda file and carries its packages as a local channel. Wheels
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


def packages_for(plan: Plan, scratch: Path) -> tuple[FileEntry, ...]:
    """Everything the plan's install steps would download, downloaded into scratch, as bundle
    files: wheels for every pip step (and a conda file's pip: list) under environment/wheels/,
    and for the conda builder the solved conda packages as a local, indexed channel."""
    environment = plan.image.environment
    mirror = _mirror(plan, scratch / "bundle")  # the environment files, as stage 1 sees them
    wheel_dir = scratch / "wheels"
    index = _index_options(environment, mirror)
    for step in environment.steps:
        if step.kind == "pip":
            files = tuple(mirror / f.bundle_path for f in step.requirements)
            download(files, environment.python, environment.platform, wheel_dir, index)
    entries: list[FileEntry] = []
    if environment.kind == "conda":
        from bundler import conda_vendor

        conda_file = mirror / plan.manifest.conda_file
        pip_list = conda_vendor.pip_list_file(conda_file)
        if pip_list is not None:
            download((pip_list,), environment.python, environment.platform, wheel_dir, index)
        entries += conda_vendor.channel_for(conda_file, environment.conda, environment.platform, scratch / "channel")
    wheels = sorted(p for p in wheel_dir.iterdir() if p.suffix == ".whl") if wheel_dir.is_dir() else []
    entries += [FileEntry(f"{layout.WHEELS_DIR}/{p.name}", layout.FILE_MODE, Copied(p)) for p in wheels]
    return tuple(entries)


def _mirror(plan: Plan, root: Path) -> Path:
    """The plan's environment files (and the runtime's requirements) laid out under root as in
    the bundle, so that every -r include resolves as it will in the image."""
    for entry in plan.files:
        if entry.path.startswith(f"{layout.ENVIRONMENT_DIR}/") or entry.path == layout.RUNTIME_REQUIREMENTS:
            target = root / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            content = entry.content
            target.write_bytes(content.data if isinstance(content, Generated) else content.path.read_bytes())
    return root


def _index_options(environment, mirror: Path) -> tuple[str, ...]:
    """[environment] index_url, extra_index_urls and ca_certificates, for pip download here
    (credentials: this machine's own netrc or pip configuration, as for any pip)."""
    from bundler.environment import CA_BUNDLE

    options: tuple[str, ...] = ("--index-url", environment.index_url) if environment.index_url else ()
    for url in environment.extra_index_urls:
        options += ("--extra-index-url", url)
    return options + (("--cert", str(mirror / CA_BUNDLE)) if environment.ca else ())


def download(
    requirement_files: tuple[Path, ...], python: str, platform: str, dest: Path, index: tuple[str, ...] = ()
) -> None:
    """pip-download every requirement (and its dependencies) as wheels into dest."""
    from bundler import progress

    # At a terminal, pip draws its own progress bar for each download (bytes, rate, time
    # left) and its log file keeps the errors; elsewhere it is quiet and its output captured.
    at_terminal = progress.shown()
    log = dest.parent / "pip-download.log"
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--disable-pip-version-check",
        *(("--progress-bar", "on", "--log", str(log)) if at_terminal else ("--quiet",)),
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
    command += [*index, "--no-input"] if index else []
    for path in requirement_files:
        command += ["--requirement", str(path)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        if at_terminal:  # pip's bar on stderr; its stdout (what it saved) kept off ours
            result = subprocess.run(command, stdout=subprocess.DEVNULL, text=True)
            result.stderr = log.read_text(errors="replace") if log.exists() else ""
        else:
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
    # pip's stderr starts such lines with ERROR:, its --log file with a time first.
    lines = [line.split("ERROR:", 1)[1].strip() for line in stderr.splitlines() if "ERROR:" in line]
    return lines[-1] if lines else ""
