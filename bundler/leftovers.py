"""Remove what bundler itself left behind, safely: staging folders of a save, old bundles
being replaced, temporary files of an interrupted register.

Whatever it removes it first opens without following links (O_NOFOLLOW) and then works
relative to that descriptor, so a link planted where a leftover is expected never leads it
elsewhere; it never opens up or removes anything another user owns or a live bundler
process still holds. Liveness is a lock (flock) the writing process holds on its staging
folder or file for as long as it writes: the kernel drops it when the process dies, even
by SIGKILL, so "unlocked" means "left behind".
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC


def lock(fd: int, wait: float = 0.0) -> bool:
    """Take the exclusive lock on an open file or folder; False when a live process holds it
    (for `wait` seconds: flock itself has no time limit, so this asks again every 5 ms)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)


def open_own_dir(parent_fd: int, name: str) -> int | None:
    """The folder `name` of parent_fd, opened, if it is a real folder of this user's; else None."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError:
        return None  # a link, a file, or gone: not a leftover of ours
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        return None
    return fd


def remove_stale(parent_fd: int, names) -> int:
    """Remove each named folder or file of parent_fd that is this user's own and that no live
    process holds; the bytes freed. Anything else (a link, another user's entry) is left alone,
    and so is what cannot be removed (the next cleanup tries again)."""
    freed = 0
    for name in names:
        fd = open_own_dir(parent_fd, name)
        if fd is None:
            freed += _remove_stale_file(parent_fd, name)
            continue
        try:
            if lock(fd):
                freed += remove_tree(parent_fd, name, expected=os.fstat(fd))
        except OSError:
            pass  # gone (another process cleaned it first), or not removable now: left for later
        finally:
            os.close(fd)
    return freed


def _remove_stale_file(parent_fd: int, name: str) -> int:
    try:
        fd = os.open(name, FILE_FLAGS, dir_fd=parent_fd)
    except OSError:
        return 0
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or not lock(fd):
            return 0
        if same(os.stat(name, dir_fd=parent_fd, follow_symlinks=False), info):
            os.unlink(name, dir_fd=parent_fd)
            return info.st_size
        return 0
    except FileNotFoundError:
        return 0
    finally:
        os.close(fd)


def remove_tree(parent_fd: int, name: str, expected: os.stat_result | None = None) -> int:
    """Remove the folder `name` of parent_fd and everything below it; the bytes freed.

    Never follows a link (a link inside is removed as a link) and never enters another file
    system (a mount point inside is an error: what is mounted there is not the tree's). A
    folder its owner made read-only or unlistable (chmod -R a-w, or 000) is opened up first:
    it is theirs to delete. With `expected`, the folder must be that very folder (same device
    and inode). Iterative, so a deep tree needs no deep recursion.
    """
    top = _open_for_removal(parent_fd, name)
    if expected is not None and not same(os.fstat(top), expected):
        os.close(top)
        raise FileNotFoundError(f"{name} was replaced while it was being removed")
    device = os.fstat(top).st_dev
    freed = 0
    stack = [(parent_fd, name, top, _entries(top))]
    try:
        while stack:
            _, _, fd, entries = stack[-1]
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    child = _open_for_removal(fd, entry.name)
                    stack.append((fd, entry.name, child, _entries(child)))
                    if os.fstat(child).st_dev != device:
                        raise OSError(errno.EBUSY, "a file system is mounted inside it", entry.name)
                    break
                freed += entry.stat(follow_symlinks=False).st_size
                os.unlink(entry.name, dir_fd=fd)
            else:
                owner_fd, folder, fd, _ = stack.pop()
                os.close(fd)
                os.rmdir(folder, dir_fd=owner_fd)
    finally:
        for _, _, fd, _ in stack:
            os.close(fd)
    return freed


def _entries(fd: int):
    with os.scandir(fd) as listing:
        return iter(list(listing))


def _open_for_removal(parent_fd: int, name: str) -> int:
    """Open a folder to empty it: listable and writable by its owner, never through a link."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except PermissionError:  # unlistable (mode 000): open it up through a path-only descriptor
        _chmod_no_follow(parent_fd, name, 0o700)
        fd = os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & 0o700 != 0o700:
        os.fchmod(fd, mode | 0o700)
    return fd


def _chmod_no_follow(parent_fd: int, name: str, mode: int) -> None:
    """chmod a folder that cannot be opened for reading, without following a link: O_PATH
    opens the entry itself (O_NOFOLLOW|O_DIRECTORY refuses a link), and /proc/self/fd names it."""
    path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=parent_fd)
    try:
        os.chmod(f"/proc/self/fd/{path_fd}", mode)
    finally:
        os.close(path_fd)


def same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
