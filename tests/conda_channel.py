"""A conda channel made in a test: real conda packages (.tar.bz2 with info/index.json and
info/paths.json), hand-assembled from the test's own files, indexed by rattler and served
over HTTP on 127.0.0.1. conda-forge cannot be reached from here; what these packages hold is
test data, and nothing pretends to be a tool."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
from pathlib import Path


def package(channel: Path, name: str, version: str, depends=(), files: dict | None = None) -> Path:
    """A noarch package `name-version-0.tar.bz2` in channel/noarch, holding `files` (path -> text)."""
    files = files or {f"share/{name}/README": f"{name} {version}\n"}
    index = {
        "name": name,
        "version": version,
        "build": "0",
        "build_number": 0,
        "depends": list(depends),
        "noarch": "generic",
        "subdir": "noarch",
        "license": "MIT",
        "timestamp": 1700000000000,
    }
    paths = {
        "paths_version": 1,
        "paths": [
            {
                "_path": path,
                "path_type": "hardlink",
                "sha256": hashlib.sha256(text.encode()).hexdigest(),
                "size_in_bytes": len(text.encode()),
            }
            for path, text in sorted(files.items())
        ],
    }
    target = channel / "noarch" / f"{name}-{version}-0.tar.bz2"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, "w:bz2") as archive:
        for path, text in [
            ("info/index.json", json.dumps(index)),
            ("info/paths.json", json.dumps(paths)),
            *sorted(files.items()),
        ]:
            data = text.encode()
            member = tarfile.TarInfo(path)
            member.size, member.mtime = len(data), 0
            archive.addfile(member, io.BytesIO(data))
    return target


def index(channel: Path) -> None:
    import rattler.index

    (channel / "linux-64").mkdir(parents=True, exist_ok=True)
    import asyncio

    asyncio.run(rattler.index.index_fs(channel, write_zst=False, write_shards=False))


@contextlib.contextmanager
def served(folder: Path):
    """folder over HTTP on 127.0.0.1; yields its URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
