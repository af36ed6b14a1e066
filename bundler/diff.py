"""`bundler diff`: what `save` with the current inputs would change in an existing bundle.

A unified diff per changed text file and one line per binary, added or deleted file, so a
user who edited the Dockerfile sees their edits and the generator's changes side by side.
Computes the would-be bundle in memory (plus streaming digests of copied files); writes nothing.
"""

from __future__ import annotations

import contextlib
import difflib
import tempfile
from pathlib import Path

from bundler import layout, render, verify
from bundler.digest import sha256_file
from bundler.entries import FileEntry, Generated, RegistryBlob

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
        expected = {path: record for path, (_, record) in would_write(prepared.entries, prepared.plan).items()}
    return verify.check(target, expected)


@contextlib.contextmanager
def _prepared(flags, home: Path, cwd: Path, target: Path):
    from bundler.save import prepare

    with tempfile.TemporaryDirectory(prefix="bundler-diff-") as scratch:
        yield prepare(flags, home, cwd, target, Path(scratch))


def would_write(entries: tuple[FileEntry, ...], plan) -> dict[str, tuple[FileEntry, layout.FileRecord]]:
    """Every file save would write, the manifest included, with its record (mode, size, sha256)."""
    files = {entry.path: (entry, _record(entry)) for entry in entries}
    manifest = FileEntry(
        layout.MANIFEST,
        layout.FILE_MODE,
        Generated(render.manifest(plan, {path: record for path, (_, record) in files.items()})),
    )
    files[layout.MANIFEST] = (manifest, _record(manifest))
    return files


def _record(entry: FileEntry) -> layout.FileRecord:
    content = entry.content
    if isinstance(content, Generated):
        return layout.FileRecord.of(entry.mode, content.data)
    if isinstance(content, RegistryBlob):  # known from the registry: save checks it as it copies
        return layout.FileRecord(entry.mode, content.size, content.sha256)
    sha, size = sha256_file(content.path)
    return layout.FileRecord(entry.mode, size, sha)


def changes(bundle: Path, new: dict[str, tuple[FileEntry, layout.FileRecord]]) -> list[str]:
    """Lines to print: unified diffs and one-line notes, sorted by path."""
    present = set(verify.listed_files(bundle)) | ({layout.MANIFEST} if layout.is_bundle(bundle) else set())
    out: list[str] = []
    for path in sorted(present | set(new)):
        if path not in new:
            out.append(f"only in {bundle.name}: {path} (save would delete it)")
        elif path not in present:
            out.append(f"new file: {path}")
        else:
            out.extend(_change(bundle, path, *new[path]))
    return out


def _change(bundle: Path, path: str, entry: FileEntry, record: layout.FileRecord) -> list[str]:
    old_path = bundle / path
    if old_path.is_symlink() or not old_path.is_file():
        return [f"not a regular file: {path} (save would write a file)"]
    old_mode = old_path.stat().st_mode & 0o7777
    if record.size > TEXT_LIMIT or old_path.stat().st_size > TEXT_LIMIT:
        if sha256_file(old_path)[0] != record.sha256:
            return [f"large file differs: {path}"]
        return [f"mode differs: {path} ({old_mode:04o} -> {entry.mode:04o})"] if old_mode != entry.mode else []
    old_bytes = old_path.read_bytes()
    new_bytes = entry.content.data if isinstance(entry.content, Generated) else entry.content.path.read_bytes()
    if old_bytes == new_bytes:
        return [f"mode differs: {path} ({old_mode:04o} -> {entry.mode:04o})"] if old_mode != entry.mode else []
    try:
        old_text, new_text = old_bytes.decode("utf-8"), new_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return [f"binary file differs: {path}"]
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=f"{bundle.name}/{path}",
            tofile=f"save/{path}",
        )
    ]
