"""Write a bundle to disk, atomically, and never over something it did not write.

The tree is built in a temporary folder beside the destination and then swapped into
place with one rename (renameat2 RENAME_EXCHANGE on Linux, so an existing bundle is
replaced in one step), so a killed `save` leaves either the old bundle or the new one,
whole. Leftover temporary folders from a killed save are removed by the next save to the
same destination (see leftovers.py: never through a link, never one a live save holds).
A destination that is a mount point cannot be renamed: in_place.py replaces its contents.
An existing destination is replaced only if it is a bundle whose files all still match
its bundle.json (or, with force, a bundle with hand edits); never a non-bundle folder.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import tempfile
from pathlib import Path

from bundler import in_place, layout, leftovers, verify
from bundler.digest import copy_hashing
from bundler.errors import OutputError, RegistryError
from bundler.layout import FileRecord
from bundler.plan import FileEntry, Generated, RegistryBlob

TMP_PREFIX = ".bundler-tmp-"


def check_destination(dest: Path, force: bool) -> None:
    """Refuse to replace anything whose loss the user would regret."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise OutputError(f"{dest} exists and is not a folder; choose another output path")
    if not dest.exists() or not any(dest.iterdir()):
        return
    if not layout.is_bundle(dest):
        raise OutputError(
            f"{dest} is a non-empty folder that is not a bundle (no {layout.MANIFEST}); "
            "bundler will not replace it: choose an empty or new output folder"
        )
    report = verify.check(dest)
    if not report.ok and not force:
        raise OutputError(
            f"{dest} has hand edits that saving would lose ({report.summary()}); "
            "move them into a Dockerfile template or rerun with --force to discard them"
        )


def staging_prefix(dest: Path) -> str:
    """How the temporary folders of a save to dest are named: the prefix and a digest of
    dest's name, then a random part. The length is fixed (a 250-character folder name still
    fits in 255 bytes), and a save to `out` never takes those of `out-b` for its own."""
    key = hashlib.sha256(os.fsencode(dest.name)).hexdigest()[:16]
    return f"{TMP_PREFIX}{key}-"


def write(dest: Path, entries: tuple[FileEntry, ...], manifest, force: bool = False) -> Path:
    """Write entries plus the manifest (manifest(records) -> bytes) to dest, atomically."""
    dest = Path(os.path.abspath(dest))
    prefix = staging_prefix(dest)
    if dest.is_dir() and not dest.is_symlink() and in_place.is_mount_point(dest):
        return in_place.write(
            dest, prefix, lambda staging: _fill(staging, entries, manifest), lambda: check_destination(dest, force)
        )
    check_destination(dest, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    parent_fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        leftovers.remove_stale(parent_fd, [n for n in os.listdir(parent_fd) if n.startswith(prefix)])
        with Staging(parent_fd, dest.parent, prefix) as staging:
            try:
                _fill(staging.path, entries, manifest)
                _swap_into_place(staging, dest, parent_fd)
            except OSError as exc:
                raise OutputError(
                    f"cannot write the bundle to {dest}: {exc.strerror or exc}; nothing was changed"
                ) from exc
    finally:
        os.close(parent_fd)
    return dest


class Staging:
    """A new folder to build a bundle in, locked for as long as this process writes it (the
    lock tells a later save that it is not a leftover); removed on the way out unless it
    was moved into place."""

    def __init__(self, parent_fd: int, parent: Path, prefix: str):
        self.parent_fd, self.parent, self.prefix = parent_fd, parent, prefix

    def __enter__(self) -> Staging:
        try:
            self.path = Path(tempfile.mkdtemp(prefix=self.prefix, dir=self.parent))
        except OSError as exc:
            raise OutputError(
                f"cannot write the bundle in {self.parent}: {exc.strerror or exc}; nothing was changed"
            ) from exc
        self.name = self.path.name
        self.fd = os.open(self.name, leftovers.DIR_FLAGS, dir_fd=self.parent_fd)
        self.identity = os.fstat(self.fd)
        leftovers.lock(self.fd)
        self.placed = False
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if not self.placed:
                leftovers.remove_tree(self.parent_fd, self.name, expected=self.identity)
        except OSError:
            pass  # unlocked once this process ends: the next save removes it
        finally:
            os.close(self.fd)


def _fill(staging: Path, entries: tuple[FileEntry, ...], manifest) -> None:
    records = {entry.path: _write_entry(staging, entry) for entry in entries}
    _write_file(staging / layout.MANIFEST, manifest(records), layout.FILE_MODE)
    for folder, _, _ in os.walk(staging):
        os.chmod(folder, layout.DIR_MODE)


def _write_entry(root: Path, entry: FileEntry) -> FileRecord:
    target = root / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    content = entry.content
    if isinstance(content, Generated):
        _write_file(target, content.data, entry.mode)
        return FileRecord.of(entry.mode, content.data)
    with _open_source(entry) as src, open(target, "wb") as out:
        sha, size = copy_hashing(src, out)
    os.chmod(target, entry.mode)
    if isinstance(content, RegistryBlob) and sha != content.sha256:
        raise RegistryError(
            f"registry file {content.path} for {entry.path} is corrupt (sha256 {sha[:12]}..., "
            f"expected {content.sha256[:12]}...); register the model again"
        )
    return FileRecord(entry.mode, size, sha)


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


def _write_file(path: Path, data: bytes, mode: int) -> None:
    with open(path, "wb") as out:
        out.write(data)
    os.chmod(path, mode)


def _discard_old_bundle(parent_fd: int, name: str, dest: Path) -> None:
    """The new bundle is in place; its predecessor, now at `name`, goes. If it cannot, say
    exactly that (not "nothing was changed"), naming both."""
    try:
        leftovers.remove_tree(parent_fd, name)
    except OSError as exc:
        raise OutputError(
            f"the bundle is saved to {dest}, but its old copy {dest.parent / name} cannot be removed "
            f"({exc.strerror or exc}); delete it by hand"
        ) from None


def _swap_into_place(staging: Staging, dest: Path, parent_fd: int) -> None:
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    if not dest.exists():
        os.rename(staging.name, dest.name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        staging.placed = True
        return
    if _exchange(staging.path, dest):
        staging.placed = True
        _discard_old_bundle(parent_fd, staging.name, dest)  # the staging name now holds the old bundle
        return
    # No atomic exchange here: move the old bundle aside under a staging name, so a kill
    # between the two renames leaves it where the next save finds and clears it.
    old = f"{staging.name}-old"
    os.rename(dest.name, old, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    os.rename(staging.name, dest.name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
    staging.placed = True
    _discard_old_bundle(parent_fd, old, dest)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))
