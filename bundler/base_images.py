"""--with-base-image: the images the Dockerfile starts from, exported into the bundle by the
local engine, so a network with no registry can `docker load` them before `docker build`.

The engine exports what it has (docker, else podman; `docker pull` first where it lacks
one), as a docker-archive that both `docker load` and `podman load` read. Each image's ID
(the digest of its configuration, which `docker load` prints and `docker images` shows) is
recorded in bundle.json beside the file, whose sha256 bundle.json lists like any other.
"""

from __future__ import annotations

from pathlib import Path

from bundler import engine as engines
from bundler.entries import Copied, FileEntry
from bundler.errors import BundlerError

ARCHIVE_MODE = 0o644


def export(
    images: tuple[tuple[str, str], ...], scratch: Path
) -> tuple[tuple[FileEntry, ...], tuple[tuple[str, str, str], ...]]:
    """Each (image, bundle path) exported to SCRATCH: the bundle's entries, and (image, path, ID)."""
    try:
        engine = engines.find()
    except BundlerError:
        raise BundlerError(
            "--with-base-image needs docker or podman here, holding the base image, to export it; "
            "install one (or save without --with-base-image and carry the base image yourself: docker save IMAGE)"
        ) from None
    entries, records = [], []
    folder = scratch / "base-images"
    folder.mkdir(exist_ok=True)
    for image, path in images:
        image_id = engine.image_id(image)
        if image_id is None:
            raise BundlerError(
                f"--with-base-image: {engine.name} has no image {image} to export; pull it first: "
                f"{engine.name} pull {image}"
            )
        target = folder / Path(path).name
        engine.save_image(image, target)
        entries.append(FileEntry(path, ARCHIVE_MODE, Copied(target)))
        records.append((image, path, image_id))
    return tuple(entries), tuple(records)
