"""`bundler build`: a convenience for people who have an image builder.

Runs `docker build` (or `podman build` where docker has no engine) on the bundle, streams
the builder's output, and returns the image name. It adds nothing the Dockerfile lacks:
the bundle stays buildable with a plain `docker build`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bundler import layout
from bundler.errors import BundlerError


def find_engine() -> str:
    """'docker' when its engine answers, else 'podman' when installed; else a clear error."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0:
        return docker
    podman = shutil.which("podman")
    if podman:
        return podman
    if docker:
        raise BundlerError(
            "docker is installed but its engine does not answer (is the daemon running?), "
            "and podman is not installed; start Docker or install podman"
        )
    raise BundlerError("no image builder found: install Docker or podman, or copy the bundle to a machine that has one")


def default_tag(bundle: Path) -> str:
    manifest = layout.read_manifest(bundle)
    return layout.default_tag(tuple(m.name for m in manifest.models), manifest.entry_script)


def build(bundle: Path, tag: str | None = None) -> str:
    layout.require_bundle(bundle)
    tag = tag or default_tag(bundle)
    engine = find_engine()
    # Output is inherited, so the builder's progress streams as it happens.
    result = subprocess.run([engine, "build", "--tag", tag, str(bundle)])
    if result.returncode != 0:
        raise BundlerError(f"{Path(engine).name} build failed (exit {result.returncode}); its output is above")
    return tag
