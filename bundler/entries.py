"""A file of a bundle, and where its bytes come from: bytes bundler made, a file copied as it
is, or a registered model file whose digest is known. Plain data, for plan, render, vendor,
emit and diff alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Generated:
    """Bytes bundler made (a rendered template, a manifest, a derived requirements file)."""

    data: bytes


@dataclass(frozen=True)
class Copied:
    """A file of the user's (entry script, source, requirements) or of bundler's runtime, copied as it is."""

    path: Path


@dataclass(frozen=True)
class RegistryBlob:
    """A registered model file: its sha256 and size are known; the sha256 is checked while it is copied."""

    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class FileEntry:
    path: str  # POSIX, relative to the bundle
    mode: int
    content: Generated | Copied | RegistryBlob
