"""Compare a bundle folder with its bundle.json: modified, missing and extra files.

Reads each file once, in chunks (memory does not grow with model size). Never writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bundler import layout
from bundler.digest import sha256_file


@dataclass(frozen=True)
class Report:
    modified: tuple[str, ...]
    missing: tuple[str, ...]
    extra: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.modified or self.missing or self.extra)

    def summary(self, limit: int = 10) -> str:
        parts = []
        for label, paths in (("edited", self.modified), ("deleted", self.missing), ("added", self.extra)):
            if paths:
                shown = ", ".join(paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
                parts.append(f"{label}: {shown}")
        return "; ".join(parts)


def listed_files(folder: Path) -> list[str]:
    """Every file under a bundle folder as a POSIX path, except the manifest itself."""
    found = []
    for dirpath, _, filenames in os.walk(folder):
        rel = Path(dirpath).relative_to(folder)
        for name in filenames:
            path = (rel / name).as_posix()
            if path != layout.MANIFEST:
                found.append(path)
    return sorted(found)


def check(folder: Path) -> Report:
    expected = layout.read_manifest(folder).files
    present = set(listed_files(folder))
    modified = []
    for path, record in sorted(expected.items()):
        if path not in present:
            continue
        full = folder / path
        if full.is_symlink() or not full.is_file():
            modified.append(path)  # bundler writes only regular files
            continue
        stat = full.stat()
        matches = stat.st_size == record.size and stat.st_mode & 0o777 == record.mode
        if not matches or sha256_file(full)[0] != record.sha256:
            modified.append(path)
    return Report(
        modified=tuple(modified),
        missing=tuple(sorted(set(expected) - present)),
        extra=tuple(sorted(present - set(expected))),
    )
