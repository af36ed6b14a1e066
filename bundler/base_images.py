"""--with-base-image: the images the Dockerfile starts from, exported into the bundle by the
local engine, so a network with no registry can `docker load` them before `docker build`.

The engine exports what it has (docker, else podman; `docker pull` first where it lacks
one), as a docker-archive that both `docker load` and `podman load` read. Each image's ID
(the digest of its configuration, which `docker load` prints and `docker images` shows) is
recorded in bundle.json beside the file, whose sha256 bundle.json lists like any other.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bundler.entries import Copied, FileEntry
from bundler.errors import BundlerError

ARCHIVE_MODE = 0o644


def export(
    images: tuple[tuple[str, str], ...], scratch: Path
) -> tuple[tuple[FileEntry, ...], tuple[tuple[str, str, str], ...]]:
    """Each (image, bundle path) exported to SCRATCH: the bundle's entries, and (image, path, ID)."""
    engine = _engine()
    entries, records = [], []
    folder = scratch / "base-images"
    folder.mkdir(exist_ok=True)
    for image, path in images:
        image_id = _image_id(engine, image)
        target = folder / Path(path).name
        _run(
            engine,
            "save",
            *(("--format", "docker-archive") if Path(engine).name == "podman" else ()),
            "--output",
            target,
            image,
            doing=f"export {image}",
        )
        entries.append(FileEntry(path, ARCHIVE_MODE, Copied(target)))
        records.append((image, path, image_id))
    return tuple(entries), tuple(records)


def _engine() -> str:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0:
        return docker
    podman = shutil.which("podman")
    if podman:
        return podman
    raise BundlerError(
        "--with-base-image needs docker or podman here, holding the base image, to export it; "
        "install one (or save without --with-base-image and carry the base image yourself: docker save IMAGE)"
    )


def _image_id(engine: str, image: str) -> str:
    result = subprocess.run([engine, "image", "inspect", "--format", "{{.Id}}", image], capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        raise BundlerError(
            f"--with-base-image: {Path(engine).name} has no image {image} to export; pull it first: "
            f"{Path(engine).name} pull {image}"
        )
    image_id = result.stdout.strip().splitlines()[0]
    return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"


def _run(engine: str, *args, doing: str) -> None:
    result = subprocess.run([engine, *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit {result.returncode}"]
        raise BundlerError(f"{Path(engine).name} could not {doing}: {last[0]}")
