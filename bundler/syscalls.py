"""The few Linux system calls bundler needs that Python's os module lacks, through ctypes.

Each is looked up in the C library once, on first use (ctypes is not imported before). Where
one is missing (not Linux, an old C library, a Python without ctypes) or the kernel or file
system refuses it, the function says so or does nothing, and its caller falls back.
"""

from __future__ import annotations

import errno
import functools
import os

RENAME_EXCHANGE = 2  # renameat2 flag
SYNC_FILE_RANGE_WRITE = 2
PR_SET_PDEATHSIG = 1


@functools.cache
def _lookup(name: str, *argtypes: str):
    """(ctypes, the C function) or (None, None) where there is none."""
    try:
        import ctypes

        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (ImportError, OSError, AttributeError):
        return None, None
    if argtypes:
        function.argtypes = tuple(getattr(ctypes, argtype) for argtype in argtypes)
    return ctypes, function


def exchange(dir_fd: int, a: str, b: str) -> bool:
    """Swap the entries a and b of the folder dir_fd in one step (renameat2 RENAME_EXCHANGE);
    False where the C library, kernel or file system cannot. Any other failure is an OSError."""
    ctypes, renameat2 = _lookup("renameat2")
    if renameat2 is None:
        return False
    if renameat2(dir_fd, os.fsencode(a), dir_fd, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), b)


def sync_file_system(fd: int) -> bool:
    """Flush the file system holding fd to its disk (syncfs); False where that cannot be done
    (the caller syncs every file system instead)."""
    _, syncfs = _lookup("syncfs")
    return syncfs is not None and syncfs(fd) == 0


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range of fd to the disk without waiting (sync_file_range WRITE). A
    hint: nothing where it is missing, and its failure (a pipe, an odd file system) ignored."""
    _, sync_file_range = _lookup("sync_file_range", "c_int", "c_int64", "c_int64", "c_uint")
    if sync_file_range is not None:
        sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def dying_with_parent(signal_number: int):
    """A preexec_fn for subprocess: the child is sent signal_number when its parent dies
    (prctl PR_SET_PDEATHSIG); None where that does not exist. The C function is found here,
    in the parent: between fork and exec only the call itself runs (an import there can
    deadlock on a lock another thread held at the fork)."""
    _, prctl = _lookup("prctl")
    if prctl is None:
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, signal_number)
