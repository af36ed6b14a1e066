"""Write a bundle to disk, atomically, and never over something it did not write.

The tree is built in a temporary folder beside the destination and then swapped into
place with one rename (renameat2 RENAME_EXCHANGE on Linux, so an existing bundle is
replaced in one step), so a killed `save` leaves either the old bundle or the new one,
whole. Leftover temporary folders from a killed save are removed by the next save.
An existing destination is replaced only if it is a bundle whose files all still match
its bundle.json (or, with force, a bundle with hand edits); never a non-bundle folder.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from bundler import layout, verify
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
            f"{dest} is a non-empty folder that is not a bundle (no bundle.json); "
            "bundler will not replace it: choose an empty or new output folder"
        )
    report = verify.check(dest)
    if not report.ok and not force:
        raise OutputError(
            f"{dest} has hand edits that saving would lose ({report.summary()}); "
            "move them into a Dockerfile template or rerun with --force to discard them"
        )


def write(dest: Path, entries: tuple[FileEntry, ...], manifest, force: bool = False) -> Path:
    """Write entries plus the manifest (manifest(records) -> bytes) to dest, atomically."""
    dest = Path(os.path.abspath(dest))
    check_destination(dest, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(dest)
    staging = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{dest.name}-", dir=dest.parent))
    try:
        records = {entry.path: _write_entry(staging, entry) for entry in entries}
        _write_file(staging / layout.MANIFEST, manifest(records), layout.FILE_MODE)
        for folder, _, _ in os.walk(staging):
            os.chmod(folder, layout.DIR_MODE)
        _swap_into_place(staging, dest)
    except OSError as exc:
        raise OutputError(f"cannot write the bundle to {dest}: {exc.strerror or exc}; nothing was changed") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return dest


def _write_entry(root: Path, entry: FileEntry) -> FileRecord:
    target = root / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    content = entry.content
    if isinstance(content, Generated):
        _write_file(target, content.data, entry.mode)
        return FileRecord(entry.mode, len(content.data), hashlib.sha256(content.data).hexdigest())
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


def _remove_leftovers(dest: Path) -> None:
    for leftover in dest.parent.glob(f"{TMP_PREFIX}{dest.name}-*"):
        try:
            _remove_tree(leftover)
        except OSError as exc:
            raise OutputError(
                f"cannot remove {leftover}, left by an earlier save ({exc.strerror}); delete it by hand"
            ) from None


def _remove_tree(path: Path) -> None:
    """rmtree that also clears a tree the user made read-only (chmod -R a-w, or 000): it is
    theirs to delete, so each folder is made writable and listable first (an owner may)."""
    os.chmod(path, os.lstat(path).st_mode | 0o700)
    for folder, subfolders, _ in os.walk(path):  # top-down: each folder is opened after its chmod
        for name in subfolders:
            sub = os.path.join(folder, name)
            if not os.path.islink(sub):
                os.chmod(sub, os.lstat(sub).st_mode | 0o700)
    shutil.rmtree(path)


def _discard_old_bundle(old: Path, dest: Path) -> None:
    """The new bundle is in place; its predecessor goes. If it cannot, say exactly that (not
    "nothing was changed"), naming both."""
    try:
        _remove_tree(old)
    except OSError as exc:
        raise OutputError(
            f"the bundle is saved to {dest}, but its old copy {old} cannot be removed "
            f"({exc.strerror}); delete it by hand"
        ) from None


def _swap_into_place(staging: Path, dest: Path) -> None:
    if dest.is_dir() and not any(dest.iterdir()):
        dest.rmdir()
    if not dest.exists():
        os.rename(staging, dest)
        return
    if _exchange(staging, dest):
        _discard_old_bundle(staging, dest)  # staging now holds the old bundle
        return
    # No atomic exchange here: move the old bundle aside under the temporary prefix, so a
    # kill between the two renames leaves it where the next save finds and clears it.
    old = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{dest.name}-old-", dir=dest.parent))
    old.rmdir()
    os.rename(dest, old)
    os.rename(staging, dest)
    _discard_old_bundle(old, dest)


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
