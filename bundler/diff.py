"""`bundler diff`: what `save` with the current inputs would change in an existing bundle.

A unified diff per changed text file and one line per binary, added or deleted file, so a
user who edited the Dockerfile sees their edits and the generator's changes side by side.
Computes the would-be bundle in memory (plus streaming digests of copied files); writes nothing.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import tempfile
from pathlib import Path

from bundler import layout, render, verify
from bundler.digest import sha256_file
from bundler.plan import FileEntry, Generated

TEXT_LIMIT = 1 << 20  # larger files are compared by digest only


def run(flags, home: Path, cwd: Path, bundle: Path) -> list[str]:
    """What `save` with these inputs would change in bundle, as lines to print."""
    from bundler.emit import check_destination

    target = Path(cwd, bundle)
    check_destination(target, force=True)  # what save would refuse outright is no diff
    with _prepared(flags, home, cwd, target) as prepared:
        return changes(target, would_write(prepared.entries, prepared.plan))


def verify_against_inputs(flags, home: Path, cwd: Path, bundle: Path) -> verify.Report:
    """`bundler verify --against-inputs`: the bundle against what save would write now, so an
    edit made to a file and to bundle.json alike is found too."""
    target = Path(cwd, bundle)
    layout.require_bundle(target)
    with _prepared(flags, home, cwd, target) as prepared:
        new = would_write(prepared.entries, prepared.plan)
        expected = {path: _record(entry) for path, entry in new.items()}
    return verify.check(target, expected)


@contextlib.contextmanager
def _prepared(flags, home: Path, cwd: Path, target: Path):
    from bundler.save import prepare

    with tempfile.TemporaryDirectory(prefix="bundler-diff-") as scratch:
        yield prepare(flags, home, cwd, target, Path(scratch))


def would_write(entries: tuple[FileEntry, ...], plan) -> dict[str, FileEntry]:
    """Every file save would write, the manifest included."""
    records = {entry.path: _record(entry) for entry in entries}
    files = {entry.path: entry for entry in entries}
    files[layout.MANIFEST] = FileEntry(layout.MANIFEST, layout.FILE_MODE, Generated(render.manifest(plan, records)))
    return files


def _record(entry: FileEntry) -> layout.FileRecord:
    if isinstance(entry.content, Generated):
        data = entry.content.data
        return layout.FileRecord(entry.mode, len(data), hashlib.sha256(data).hexdigest())
    sha, size = sha256_file(entry.content.path)
    return layout.FileRecord(entry.mode, size, sha)


def changes(bundle: Path, new: dict[str, FileEntry]) -> list[str]:
    """Lines to print: unified diffs and one-line notes, sorted by path."""
    present = set(verify.listed_files(bundle)) | ({layout.MANIFEST} if layout.is_bundle(bundle) else set())
    out: list[str] = []
    for path in sorted(present | set(new)):
        if path not in new:
            out.append(f"only in {bundle.name}: {path} (save would delete it)")
            continue
        entry = new[path]
        new_bytes = _bytes(entry)
        if path not in present:
            out.append(f"new file: {path}")
            continue
        old_path = bundle / path
        if old_path.is_symlink() or not old_path.is_file():
            out.append(f"not a regular file: {path} (save would write a file)")
            continue
        if new_bytes is None or old_path.stat().st_size > TEXT_LIMIT:
            new_sha = sha256_file(entry.content.path)[0] if new_bytes is None else hashlib.sha256(new_bytes).hexdigest()
            if sha256_file(old_path)[0] != new_sha:
                out.append(f"large file differs: {path}")
            continue
        old_bytes = old_path.read_bytes()
        if old_bytes == new_bytes:
            if (old_path.stat().st_mode & 0o777) != entry.mode:
                out.append(f"mode differs: {path} ({old_path.stat().st_mode & 0o777:04o} -> {entry.mode:04o})")
            continue
        try:
            old_text, new_text = old_bytes.decode("utf-8"), new_bytes.decode("utf-8")
        except UnicodeDecodeError:
            out.append(f"binary file differs: {path}")
            continue
        out.extend(
            line.rstrip("\n")
            for line in difflib.unified_diff(
                old_text.splitlines(keepends=True),
                new_text.splitlines(keepends=True),
                fromfile=f"{bundle.name}/{path}",
                tofile=f"save/{path}",
            )
        )
    return out


def _bytes(entry: FileEntry) -> bytes | None:
    if isinstance(entry.content, Generated):
        return entry.content.data
    if entry.content.path.stat().st_size > TEXT_LIMIT:
        return None
    return entry.content.path.read_bytes()
