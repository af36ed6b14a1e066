"""Compare a bundle folder with its bundle.json: modified, missing and extra files.

Reads each file once, in chunks (memory does not grow with model size). Never writes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from bundler.digest import sha256_file
from bundler.errors import BundlerError

MANIFEST = "bundle.json"


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


def is_bundle(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise ValueError("no 'files' table")
        if not all(isinstance(meta, dict) for meta in data["files"].values()):
            raise ValueError("a 'files' entry is not a table")
        if not isinstance(data.get("inputs", {}), dict):
            raise ValueError("'inputs' is not a table")
        return data
    except (OSError, ValueError) as exc:
        raise BundlerError(f"{path}: not a readable bundle manifest ({exc}); save the bundle again") from exc


def listed_files(folder: Path) -> list[str]:
    """Every file under folder as a POSIX path, except the manifest itself."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        rel = Path(dirpath).relative_to(folder)
        for name in filenames:
            path = (rel / name).as_posix()
            if path != MANIFEST:
                found.append(path)
    return sorted(found)


def check(folder: Path) -> Report:
    expected = read_manifest(folder)["files"]
    present = set(listed_files(folder))
    modified = []
    for path, meta in sorted(expected.items()):
        if path not in present:
            continue
        full = folder / path
        if full.is_symlink() or not full.is_file():
            modified.append(path)  # bundler writes only regular files
            continue
        mode = full.stat().st_mode & 0o777
        sha, size = (None, full.stat().st_size)
        if size == meta.get("size"):
            sha, size = sha256_file(full)
        if size != meta.get("size") or sha != meta.get("sha256") or f"{mode:04o}" != meta.get("mode"):
            modified.append(path)
    return Report(
        modified=tuple(modified),
        missing=tuple(sorted(set(expected) - present)),
        extra=tuple(sorted(present - set(expected))),
    )
