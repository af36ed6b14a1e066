"""Copying while hashing a large file that may change (register): what is hashed is what is written."""

from __future__ import annotations

import errno
import hashlib
import os
import threading

import pytest

from bundler import digest

LARGE = digest.KERNEL_COPY_FROM + 3 * digest.CHUNK_SIZE + 12345  # several chunks and a ragged end


def test_a_large_copy_from_and_to_the_middle_of_files(tmp_path):
    content = os.urandom(LARGE)
    (tmp_path / "source").write_bytes(b"skipped" + content)
    with open(tmp_path / "source", "rb") as source, open(tmp_path / "target", "wb") as target:
        source.read(7)  # both files mid-way, and the target's header still in Python's buffer
        target.write(b"header")
        done = []
        sha, size = digest.copy_hashing(source, target, done.append)
        assert (source.tell(), target.tell()) == (7 + LARGE, 6 + LARGE)  # where the plain loop leaves them
        target.write(b"trailer")
    assert (sha, size) == (hashlib.sha256(content).hexdigest(), LARGE)
    assert (tmp_path / "target").read_bytes() == b"header" + content + b"trailer"
    assert sum(done) == LARGE and len(done) > 1


def test_a_source_changing_under_the_copy_is_named_by_what_was_written(tmp_path):
    path = tmp_path / "source"
    path.write_bytes(b"\0" * LARGE)
    stop, started = threading.Event(), threading.Event()

    def scribble():  # another program saving the model meanwhile (its size stays)
        with open(path, "r+b", buffering=0) as other:
            while not stop.is_set():
                other.seek(int.from_bytes(os.urandom(4), "big") % (LARGE - 4096))
                other.write(os.urandom(4096))
                started.set()

    scribbler = threading.Thread(target=scribble)
    scribbler.start()
    started.wait(10)
    try:
        with open(path, "rb") as source, open(tmp_path / "target", "wb") as target:
            sha, size = digest.copy_hashing(source, target)
    finally:
        stop.set()
        scribbler.join()
    written = (tmp_path / "target").read_bytes()
    assert size == len(written) == LARGE
    assert sha == hashlib.sha256(written).hexdigest()
    assert written != b"\0" * LARGE  # the scribbler did change what was copied


def test_a_failed_write_is_raised_not_lost(tmp_path):
    (tmp_path / "source").write_bytes(b"\1" * LARGE)
    with open(tmp_path / "source", "rb") as source, open("/dev/full", "wb") as full, pytest.raises(OSError) as failed:
        digest.copy_hashing(source, full)
    assert failed.value.errno == 28  # ENOSPC


def test_a_compressed_file_is_copied_as_it_reads_not_as_its_descriptor_holds(tmp_path):
    """A GzipFile's descriptor is the compressed file's: copying by descriptor would copy that."""
    import gzip

    content = os.urandom(LARGE // 2) * 2  # compresses a little, stays large
    with gzip.open(tmp_path / "source.gz", "wb", compresslevel=1) as packed:
        packed.write(content)
    assert (tmp_path / "source.gz").stat().st_size >= digest.KERNEL_COPY_FROM
    with gzip.open(tmp_path / "source.gz", "rb") as source, open(tmp_path / "target", "wb") as target:
        sha, size = digest.copy_hashing(source, target)
    assert (sha, size) == (hashlib.sha256(content).hexdigest(), len(content))
    assert (tmp_path / "target").read_bytes() == content


def test_where_the_kernel_cannot_copy_a_blob_it_is_copied_by_hand(tmp_path, monkeypatch):
    """copy_file_range refused (another file system, an old kernel): the same bytes and hash."""
    content = os.urandom(LARGE)
    (tmp_path / "blob").write_bytes(content)

    def refused(*args):
        raise OSError(errno.ENOSYS, "not here")

    monkeypatch.setattr(os, "copy_file_range", refused)
    with open(tmp_path / "blob", "rb") as source, open(tmp_path / "target", "wb") as target:
        sha, size = digest.copy_hashing(source, target, unchanging=True)
        assert target.tell() == LARGE
    assert (sha, size) == (hashlib.sha256(content).hexdigest(), LARGE)
    assert (tmp_path / "target").read_bytes() == content
