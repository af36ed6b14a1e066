"""A syrupy extension whose snapshots are whole directory trees under golden/<case>/.

A tree is serialised to one text document (a header line per file with its mode and
size, then the file's text, or base64 for binary files), so syrupy's diff on failure
shows exactly which file and line changed. `pytest --snapshot-update` writes the tree
back to golden/<case>/ as real files a reviewer can read and diff in git.

Discovery is deliberately off (no unused-snapshot deletion by syrupy): the golden test
itself checks that golden/ holds exactly one folder per input case.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from pathlib import Path

from syrupy.data import SnapshotCollections
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

GOLDEN_ROOT = Path(__file__).resolve().parent.parent / "golden"
_HEADER = re.compile(r"^=== (?P<path>.+) mode=(?P<mode>0[0-7]{3}) (?P<kind>text|base64) bytes=(?P<size>\d+) ===$")


def read_tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """{posix path: (mode, bytes)} for every file under root; mode is 0755 or 0644.

    Only the executable bit is kept: git stores nothing else, and a checkout's umask must
    not change the comparison.
    """
    tree = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath, name)
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            tree[path.relative_to(root).as_posix()] = (mode, path.read_bytes())
    return dict(sorted(tree.items()))


def serialize_tree(tree: dict[str, tuple[int, bytes]]) -> str:
    parts = []
    for path, (mode, data) in sorted(tree.items()):
        try:
            text, kind = data.decode("utf-8"), "text"
        except UnicodeDecodeError:
            text, kind = base64.encodebytes(data).decode("ascii"), "base64"
        parts.append(f"=== {path} mode={mode:04o} {kind} bytes={len(data)} ===\n{text}\n")
    return "".join(parts)


def deserialize_tree(document: str) -> dict[str, tuple[int, bytes]]:
    tree = {}
    raw = document.encode("utf-8")
    position = 0
    while position < len(raw):
        end = raw.index(b"\n", position)
        header = _HEADER.match(raw[position:end].decode("utf-8"))
        if header is None:
            raise ValueError(f"bad golden tree header at byte {position}")
        size = int(header["size"])
        if header["kind"] == "text":
            data = raw[end + 1 : end + 1 + size]
            position = end + 1 + size + 1
        else:
            body_end = raw.index(b"\n===", end) + 1 if b"\n===" in raw[end:] else len(raw)
            data = base64.decodebytes(raw[end + 1 : body_end - 1])
            position = body_end
        tree[header["path"]] = (int(header["mode"], 8), data)
    return tree


class GoldenTreeExtension(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = ""

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(GOLDEN_ROOT)

    @classmethod
    def get_file_basename(cls, *, test_location, index) -> str:
        return str(index)  # the case name, passed as snapshot(name=case)

    @classmethod
    def matches_test_location(cls, *, test_location, snapshot_location) -> bool:
        return True

    def discover_snapshots(self, *, test_location, ignore_extensions=None):
        return SnapshotCollections()

    def delete_snapshots(self, *, snapshot_location, snapshot_names) -> None:
        return None

    def serialize(self, data, **kwargs) -> str:
        return serialize_tree(data)

    def read_snapshot_data_from_location(self, *, snapshot_location, snapshot_name, session_id):
        folder = Path(snapshot_location)
        return serialize_tree(read_tree(folder)) if folder.is_dir() else None

    @classmethod
    def write_snapshot_collection(cls, *, snapshot_collection, name_order=None) -> None:
        folder = Path(snapshot_collection.location)
        tree = deserialize_tree(next(iter(snapshot_collection)).data)
        if folder.exists():
            shutil.rmtree(folder)
        for path, (mode, data) in tree.items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            os.chmod(target, mode)
