"""Replace a bundle inside a folder that cannot itself be renamed: a mount point (a
`docker run -v ...:/out` volume), where renaming a new tree into place fails with "Device
or resource busy" and a tree beside it would sit on another file system.

Everything happens inside the destination, by renames on its own file system, in phases
that a later save can finish when a save is killed midway:

1. the new bundle is built in `<prefix>new-<id>/` (locked while this save runs);
2. the old bundle's entries move into `<prefix>old-<id>/`, bundle.json first, so from then
   on the folder is not a bundle until step 4 ends;
3. `new-<id>` is renamed `in-<id>`: the new bundle is complete and the old one is aside;
4. the entries of `in-<id>` move up into the folder, bundle.json last; then `old-<id>` goes.

A later save (`recover`) finds an unlocked `in-<id>` and finishes step 4; an unlocked
`new-<id>` means the save stopped before step 3, so the old entries move back. Either way
the folder ends up holding one whole bundle, the old one or the new one.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from bundler import layout, leftovers
from bundler.errors import OutputError

NEW, OLD, IN = "new-", "old-", "in-"
FILE_SYSTEMS_OWN = "lost+found"  # at the root of a fresh ext4 volume: never moved, never reported
MOUNTINFO = "/proc/self/mountinfo"


def is_mount_point(path: Path) -> bool:
    """Whether path is a mount point, a bind mount of a folder of the same file system included
    (which os.path.ismount cannot tell: it compares devices)."""
    return os.path.ismount(path) or os.path.realpath(path) in _mount_points()


def mount_points_inside(folder: Path) -> list[str]:
    """The mount points below folder (not folder itself), from /proc/self/mountinfo."""
    root = os.path.realpath(folder)
    return sorted(point for point in _mount_points() if point.startswith(root + "/"))


def _mount_points() -> set[str]:
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as table:
            return {_unescape(line.split()[4]) for line in table if len(line.split()) > 4}
    except OSError:
        return set()


def _unescape(field: str) -> str:
    """mountinfo writes a space as \\040, a tab as \\011, and so on."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), field)


def write(dest: Path, prefix: str, fill, check) -> Path:
    """Build the bundle with fill(folder descriptor) and put it in place of dest's contents,
    once check() (which refuses what must not be replaced) has passed. One save at a time: the
    destination itself is locked (flock) for as long as this one runs."""
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not leftovers.lock(fd):
            raise OutputError(f"another save is writing to {dest} right now; wait for it to finish and save again")
        recover(fd, prefix)
        check()
        try:
            new = Path(tempfile.mkdtemp(prefix=prefix + NEW, dir=dest)).name
        except OSError as exc:
            raise OutputError(f"cannot write the bundle to {dest}: {exc.strerror or exc}; nothing was changed") from exc
        new_fd = os.open(new, leftovers.DIR_FLAGS, dir_fd=fd)
        try:
            _replace(fd, dest, prefix, new, new_fd, fill)
        finally:
            os.close(new_fd)
    finally:
        os.close(fd)  # and with it the lock
    return dest


def _replace(fd: int, dest: Path, prefix: str, new: str, new_fd: int, fill) -> None:
    suffix = new[len(prefix + NEW) :]
    old, ready = prefix + OLD + suffix, prefix + IN + suffix
    try:
        fill(new_fd)
    except BaseException as exc:
        leftovers.remove_tree(fd, new)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write the bundle to {dest}: {exc.strerror or exc}; nothing was changed") from exc
        raise
    os.mkdir(old, 0o700, dir_fd=fd)
    current = [name for name in os.listdir(fd) if not name.startswith(prefix) and name != FILE_SYSTEMS_OWN]
    _move(fd, "", old, sorted(current, key=lambda name: name != layout.MANIFEST))  # bundle.json first
    os.rename(new, ready, src_dir_fd=fd, dst_dir_fd=fd)
    _finish(fd, prefix, suffix)


def _finish(fd: int, prefix: str, suffix: str) -> None:
    """Step 4: the complete new bundle moves up, bundle.json last, and the old one goes."""
    ready, old = prefix + IN + suffix, prefix + OLD + suffix
    _move(fd, ready, "", sorted(_names(fd, ready), key=lambda name: name == layout.MANIFEST))
    os.rmdir(ready, dir_fd=fd)
    if old in os.listdir(fd):
        leftovers.remove_tree(fd, old)


def recover(fd: int, prefix: str) -> None:
    """Finish or undo what a killed save left in this folder (see the module's docstring); the
    caller holds the destination's lock, so no save of this bundler is writing here."""
    for name in sorted(os.listdir(fd)):
        if not name.startswith(prefix) or name not in os.listdir(fd):
            continue
        folder = leftovers.open_own_dir(fd, name)
        if folder is None:
            continue  # a link or another user's folder: not ours to touch
        try:
            phase, suffix = name[len(prefix) :].split("-", 1) if "-" in name[len(prefix) :] else ("", "")
            if phase + "-" == IN:
                _finish(fd, prefix, suffix)
            elif phase + "-" == NEW:
                _undo(fd, prefix, suffix)
            elif phase + "-" == OLD and prefix + NEW + suffix not in os.listdir(fd):
                leftovers.remove_tree(fd, name)  # step 4 was done; only its removal was cut short
        finally:
            os.close(folder)


def _undo(fd: int, prefix: str, suffix: str) -> None:
    """The save stopped before its bundle was complete: the old entries move back."""
    new, old = prefix + NEW + suffix, prefix + OLD + suffix
    if old in os.listdir(fd):
        _move(fd, old, "", sorted(_names(fd, old), key=lambda name: name == layout.MANIFEST))
        os.rmdir(old, dir_fd=fd)
    leftovers.remove_tree(fd, new)


def _names(fd: int, folder: str) -> list[str]:
    sub = os.open(folder, leftovers.DIR_FLAGS, dir_fd=fd)
    try:
        return os.listdir(sub)
    finally:
        os.close(sub)


def _move(fd: int, source: str, target: str, names: list[str]) -> None:
    for name in names:
        os.rename(os.path.join(source, name), os.path.join(target, name), src_dir_fd=fd, dst_dir_fd=fd)
