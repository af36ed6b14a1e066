"""Write a bundle's files into a new folder, and hash what is written.

Everything is done relative to the folder's open descriptor: every folder is made with
mkdir and opened with O_NOFOLLOW, every file created with O_EXCL|O_NOFOLLOW, and modes are
set on descriptors. So whoever can rename entries where the bundle is built (an unsafe
shared folder) cannot make bundler write, or chmod, anything outside its own new tree.
Registry files are checked against their known sha256 as they are copied.
"""

from __future__ import annotations

import os

from bundler import layout, leftovers, progress
from bundler.digest import copy_hashing
from bundler.entries import FileEntry, Generated, RegistryBlob
from bundler.errors import OutputError, RegistryError
from bundler.layout import FileRecord

_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def fill(root_fd: int, entries: tuple[FileEntry, ...], manifest) -> None:
    """Write entries, then manifest(records) as bundle.json, into the empty folder root_fd."""
    folders = _Folders(root_fd)
    try:
        with progress.bytes_of("saving", _bytes_to_copy(entries)) as update:
            records = {entry.path: _write_entry(folders, entry, update) for entry in entries}
        _write_bytes(root_fd, layout.MANIFEST, manifest(records), layout.FILE_MODE)
        folders.set_modes(layout.DIR_MODE)
    finally:
        folders.close()


class _Folders:
    """The folders made so far, each open once, by their POSIX path under the root."""

    def __init__(self, root_fd: int):
        self.root_fd = root_fd
        self.open: dict[str, int] = {}

    def of(self, path: str) -> int:
        """The descriptor of the folder holding `path`, made (with its parents) if need be."""
        parent, _, _ = path.rpartition("/")
        if not parent:
            return self.root_fd
        if parent not in self.open:
            holder, name = self.of(parent), parent.rpartition("/")[2]
            try:
                os.mkdir(name, 0o700, dir_fd=holder)
            except FileExistsError:
                pass  # made for an earlier file; opened below without following a link
            self.open[parent] = os.open(name, leftovers.DIR_FLAGS, dir_fd=holder)
        return self.open[parent]

    def set_modes(self, mode: int) -> None:
        for fd in (self.root_fd, *self.open.values()):
            os.fchmod(fd, mode)

    def close(self) -> None:
        for fd in self.open.values():
            os.close(fd)
        self.open.clear()


def _bytes_to_copy(entries: tuple[FileEntry, ...]) -> int:
    total = 0
    for entry in entries:
        if isinstance(entry.content, RegistryBlob):
            total += entry.content.size
        elif not isinstance(entry.content, Generated):
            try:
                total += os.stat(entry.content.path).st_size
            except OSError:
                pass  # reported when it is copied
    return total


def _write_entry(folders: _Folders, entry: FileEntry, update=None) -> FileRecord:
    folder, name = folders.of(entry.path), entry.path.rpartition("/")[2]
    content = entry.content
    if isinstance(content, Generated):
        _write_bytes(folder, name, content.data, entry.mode)
        return FileRecord.of(entry.mode, content.data)
    with _open_source(entry) as src, os.fdopen(os.open(name, _NEW_FILE, 0o600, dir_fd=folder), "wb") as out:
        sha, size = copy_hashing(src, out, update, unchanging=isinstance(content, RegistryBlob))
        os.fchmod(out.fileno(), entry.mode)
    if isinstance(content, RegistryBlob) and sha != content.sha256:
        raise RegistryError(
            f"registry file {content.path} for {entry.path} is corrupt (sha256 {sha[:12]}..., "
            f"expected {content.sha256[:12]}...); register the model again"
        )
    return FileRecord(entry.mode, size, sha)


def _write_bytes(folder: int, name: str, data: bytes, mode: int) -> None:
    with os.fdopen(os.open(name, _NEW_FILE, 0o600, dir_fd=folder), "wb") as out:
        out.write(data)
        os.fchmod(out.fileno(), mode)


def _open_source(entry: FileEntry):
    content = entry.content
    try:
        return open(content.path, "rb")
    except OSError as exc:
        if isinstance(content, RegistryBlob):
            raise RegistryError(
                f"registry file {content.path} for {entry.path} cannot be read ({exc.strerror}); "
                "register the model again"
            ) from None
        raise OutputError(
            f"cannot read {content.path} ({exc.strerror}); make it readable or leave it out "
            "of the bundle (.bundlerignore)"
        ) from None
