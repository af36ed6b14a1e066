"""Streaming sha256, and the one copy-and-hash loop: memory stays flat whatever the file size."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

CHUNK_SIZE = 1 << 20


def copy_hashing(source: BinaryIO, target: BinaryIO | None = None) -> tuple[str, int]:
    """Read source to its end (writing each chunk to target, if any); its sha256 and size."""
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK_SIZE):
        digest.update(chunk)
        if target is not None:
            target.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sha256_file(path: Path) -> tuple[str, int]:
    with open(path, "rb") as handle:
        return copy_hashing(handle)
