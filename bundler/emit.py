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

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from bundler import in_place, layout, leftovers, syscalls, verify
from bundler.entries import FileEntry
from bundler.errors import BundlerError, OutputError
from bundler.fill import fill

TMP_PREFIX = ".bundler-tmp-"
PLACING_SAVE_LETS_GO_WITHIN = 1.0  # seconds; it lets go right after its rename, unless descheduled


def check_destination(dest: Path, force: bool) -> None:
    """Refuse to replace anything whose loss the user would regret.

    Read again when a concurrent save replaced dest during the reading: the files of a bundle
    being removed read as hand edits, and a moment without dest (a save without the atomic
    exchange) as no bundle. dest's identity tells: inode and change time, which an exchange
    changes (ext4 gives a freed inode number straight to the next new folder)."""
    for attempt in range(3):
        before = _identity(dest)
        try:
            return _refuse_what_would_be_lost(dest, force)
        except (BundlerError, OSError):
            if attempt == 2 or _identity(dest) == before:
                raise


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino, info.st_ctime_ns


def _refuse_what_would_be_lost(dest: Path, force: bool) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise OutputError(f"{dest} exists and is not a folder; choose another output path")
    names = os.listdir(dest) if dest.exists() else []
    if not names or (names == [in_place.FILE_SYSTEMS_OWN] and in_place.is_mount_point(dest)):
        return  # a fresh volume's lost+found stays (in_place.py); elsewhere it is the user's folder
    inside = in_place.mount_points_inside(dest)
    if inside:
        raise OutputError(
            f"{dest} holds a mount point, {inside[0]}: replacing the bundle would delete what is mounted there; "
            "unmount it, then save again"
        )
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
            dest, prefix, lambda staging_fd: fill(staging_fd, entries, manifest), lambda: check_destination(dest, force)
        )
    check_destination(dest, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    parent_fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        leftovers.remove_stale(parent_fd, [n for n in os.listdir(parent_fd) if n.startswith(prefix)])
        with Staging(parent_fd, dest.parent, prefix) as staging:
            try:
                fill(staging.fd, entries, manifest)
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
        while True:
            try:
                self.path = Path(tempfile.mkdtemp(prefix=self.prefix, dir=self.parent))
                self.name = self.path.name
                self.fd = os.open(self.name, leftovers.DIR_FLAGS, dir_fd=self.parent_fd)
            except FileNotFoundError:
                continue  # another save took it for a leftover before it was opened: make another
            except OSError as exc:
                raise OutputError(
                    f"cannot write the bundle in {self.parent}: {exc.strerror or exc}; nothing was changed"
                ) from exc
            self.identity = os.fstat(self.fd)
            if leftovers.lock(self.fd) and self._still_ours():
                break
            os.close(self.fd)  # another save's cleanup had it first: make another
        self.placed = False
        return self

    def in_place(self) -> None:
        """Moved into place: it is the bundle now, no longer a save in progress, so its lock is
        let go (a concurrent save that swaps it out again must be able to remove it)."""
        self.placed = True
        os.close(self.fd)
        self.fd = None

    def _still_ours(self) -> bool:
        try:
            return leftovers.same(os.stat(self.name, dir_fd=self.parent_fd, follow_symlinks=False), self.identity)
        except FileNotFoundError:
            return False

    def __exit__(self, *exc_info) -> None:
        if self.placed:
            return
        try:
            leftovers.remove_tree(self.parent_fd, self.name, expected=self.identity)
        except OSError:
            pass  # unlocked once this process ends: the next save removes it
        finally:
            os.close(self.fd)


def _discard_old_bundle(parent_fd: int, name: str, dest: Path) -> None:
    """The new bundle is in place; its predecessor, now at `name`, goes. Its lock may be held
    for a moment by the save that had just put it in place and is letting go of it: that
    save removes nothing, so this one waits a little. Held longer, it is another save removing
    it as a leftover, or a process outside bundler (`flock out ...`): left, for the next
    save. If it cannot be removed, or the removal is interrupted, say exactly that (not
    "nothing was changed"), naming both."""
    try:
        fd = os.open(name, leftovers.DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        return  # another save took it for a leftover and removed it
    try:
        if leftovers.lock(fd, wait=PLACING_SAVE_LETS_GO_WITHIN):
            leftovers.remove_tree(parent_fd, name, expected=os.fstat(fd))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(
            f"the bundle is saved to {dest}, but its old copy {dest.parent / name} cannot be removed "
            f"({exc.strerror or exc}); delete it by hand"
        ) from None
    except KeyboardInterrupt:
        raise OutputError(
            f"interrupted after the bundle was saved to {dest}: its old copy {dest.parent / name} is left, "
            "and the next save to it removes it"
        ) from None
    finally:
        os.close(fd)


def _swap_into_place(staging: Staging, dest: Path, parent_fd: int) -> None:
    """Put the staging folder at dest: one rename where dest is missing or an empty folder,
    else an atomic exchange with the bundle there. No look at dest beforehand decides which:
    concurrent saves exchange dest under a look (an old bundle being emptied reads as empty)."""
    set_aside = []  # without the exchange: old bundles moved out of dest's way
    while True:
        try:
            os.rename(staging.name, dest.name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        else:
            staging.in_place()
            for old in set_aside:
                _discard_old_bundle(parent_fd, old, dest)
            return
        try:
            exchanged = syscalls.exchange(parent_fd, staging.name, dest.name)
        except FileNotFoundError:
            continue  # a save without the exchange had moved dest aside for an instant
        if exchanged:
            staging.in_place()
            _discard_old_bundle(parent_fd, staging.name, dest)  # the staging name now holds the old bundle
            return
        # No atomic exchange here: move the old bundle aside under a staging name (a kill before
        # the rename above succeeds leaves it where the next save finds and clears it), then
        # rename again; another save may put its bundle at dest in between, which goes aside too.
        old = f"{staging.name}-old{len(set_aside)}"
        try:
            os.rename(dest.name, old, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        except FileNotFoundError:
            continue
        set_aside.append(old)
