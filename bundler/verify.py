"""Compare a bundle folder with what it should hold: modified, missing and extra entries.

What it should hold is its bundle.json, or (verify --against-inputs) what `save` would
write from the inputs now, which also catches a change someone made to a file and to the
manifest alike: bundle.json is not signed, so on its own it vouches only for what it lists.

Every entry is looked at without following links: a link in place of a file is modified, a
link where nothing is expected is extra (whether it leads to a file or to a folder). Modes
are compared whole, setuid, setgid and sticky bits included, and every folder must have the
mode bundler writes (COPY carries both into the image); a folder that holds nothing the
bundle lists is extra. Each file is read once, in chunks (memory does not grow with model
size). Never writes.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from bundler import in_place, layout, progress
from bundler.digest import sha256_file
from bundler.errors import BundlerError


@dataclass(frozen=True)
class Report:
    modified: tuple[str, ...]  # folders end in "/"
    missing: tuple[str, ...]
    extra: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not (self.modified or self.missing or self.extra)

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "modified": list(self.modified),
            "missing": list(self.missing),
            "extra": list(self.extra),
        }

    def failure(self, bundle: Path, reference: str) -> BundlerError:
        count = len(self.modified) + len(self.missing) + len(self.extra)
        return BundlerError(f"{bundle}: {count} entries differ from {reference}")

    def summary(self, limit: int = 10) -> str:
        parts = []
        for label, paths in (("edited", self.modified), ("deleted", self.missing), ("added", self.extra)):
            if paths:
                shown = ", ".join(paths[:limit]) + (f" and {len(paths) - limit} more" if len(paths) > limit else "")
                parts.append(f"{label}: {shown}")
        return "; ".join(parts)


def listed_files(folder: Path) -> list[str]:
    """Every entry under a bundle folder that is not a folder (files, links), as POSIX paths,
    except the manifest itself."""
    entries, _, _ = _scan(folder)
    return sorted(path for path in entries if path != layout.MANIFEST)


def check(folder: Path, expected: dict[str, layout.FileRecord] | None = None) -> Report:
    """Against bundle.json, or against `expected` (every file, bundle.json included)."""
    if expected is None:
        expected = layout.read_manifest(folder).files
    else:
        layout.require_bundle(folder)
    entries, folders, unlistable = _scan(folder)
    with progress.bytes_of("verifying", sum(r.size for r in expected.values())) as update:
        modified = [
            path
            for path, record in sorted(expected.items())
            if path in entries and not _matches(folder / path, entries[path], record, update)
        ]
    if layout.MANIFEST not in expected:  # it vouches for the rest: it must itself be a plain 0644 file
        manifest = entries.pop(layout.MANIFEST, None)
        if manifest is None or not stat.S_ISREG(manifest.st_mode) or stat.S_IMODE(manifest.st_mode) != layout.FILE_MODE:
            modified.append(layout.MANIFEST)
    needed = {""} | {parent.as_posix() for path in expected for parent in Path(path).parents if parent != Path(".")}
    empty_folders = []
    for path, mode in sorted(folders.items()):
        if path in needed:
            if mode != layout.DIR_MODE or path in unlistable:
                modified.append(path + "/")
        elif _parent(path) in needed and not any(entry.startswith(path + "/") for entry in entries):
            empty_folders.append(path + "/")  # nothing below it: no file of its own would name it
    missing = set(expected) - set(entries)
    missing -= {path for path in missing if any(path.startswith(folder + "/") for folder in unlistable)}
    return Report(
        modified=tuple(sorted(modified)),
        missing=tuple(sorted(missing)),
        extra=tuple(sorted((set(entries) - set(expected)) | set(empty_folders))),
    )


def _parent(path: str) -> str:
    parent = Path(path).parent.as_posix()
    return "" if parent == "." else parent


def _matches(path: Path, info: os.stat_result | None, record: layout.FileRecord, update=None) -> bool:
    if info is None or not stat.S_ISREG(info.st_mode):
        return False  # bundler writes only regular files
    if info.st_size != record.size or stat.S_IMODE(info.st_mode) != record.mode:
        return False
    return sha256_file(path, update)[0] == record.sha256


def _scan(folder: Path) -> tuple[dict[str, os.stat_result], dict[str, int], set[str]]:
    """(every entry that is not a folder -> its lstat, every folder -> its mode, the folders
    that cannot be listed), by POSIX path. A fresh file system's own lost+found at the top of a
    mount point is no entry of the bundle."""
    entries: dict[str, os.stat_result] = {}
    folders: dict[str, int] = {}
    unlistable: set[str] = set()
    pending = [""]
    while pending:
        rel = pending.pop()
        try:
            listing = list(os.scandir(folder / rel if rel else folder))
        except PermissionError:
            unlistable.add(rel)  # its mode is not the one bundler writes: reported as modified
            continue
        for entry in listing:
            path = f"{rel}/{entry.name}" if rel else entry.name
            info = entry.stat(follow_symlinks=False)
            if path == in_place.FILE_SYSTEMS_OWN and stat.S_ISDIR(info.st_mode) and in_place.is_mount_point(folder):
                continue
            if stat.S_ISDIR(info.st_mode):
                folders[path] = stat.S_IMODE(info.st_mode)
                pending.append(path)
            else:
                entries[path] = info
    return entries, folders, unlistable
