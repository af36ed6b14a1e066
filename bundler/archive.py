"""The archive: the same bundle as one file, to carry across an air gap (`bundler pack`,
`save --archive`), and its check without extracting (`bundler verify FILE`).

An archive holds exactly the files bundle.json lists, and bundle.json: sorted, each folder
before what it holds, every member owned by 0:0 with no user or group name, time 0, the
mode bundle.json records (folders 0755), and in .tar.gz a gzip header with no name and no
time. So the same bundle gives the same bytes on any machine, umask, time zone or user
(for .tar.gz, with the same zlib: the compressor's output is its own). The archive is
written beside its final name and renamed into place (a killed pack leaves no archive under
that name; like tar, it leaves flushing to disk to the system), and files stream through in large
chunks, each hashed on the way and checked against bundle.json: memory stays flat with
model size, and a bundle edited since it was saved is refused, not packed.

An archive given to `verify` is input from another network: a member that is a link, a
device, an absolute path, or leaves the archive's folder is refused before anything else.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bundler import layout, progress
from bundler.errors import BundlerError, InputError
from bundler.verify import Report

SUFFIXES = {".tar": "", ".tar.gz": "gz", ".tgz": "gz"}
CHUNK = 1 << 20
MANIFEST_LIMIT = 64 << 20  # bundle.json of a bundle with 100,000 files is about 20 MB
# No header of a bundle's archive (a pax header, a long name) comes near this: tarfile reads
# one whole, in one read, so a crafted archive could claim gigabytes for one.
HEADER_LIMIT = 1 << 20
GZIP_LEVEL = 6  # gzip's own default: most of level 9's size at a fraction of its time


@dataclass(frozen=True)
class Packed:
    path: Path
    files: int
    bytes: int  # the archive's size

    def to_json(self) -> dict:
        return {"path": str(self.path), "files": self.files, "bytes": self.bytes}


def is_archive(path: Path) -> bool:
    return _compression(path) is not None


def pack(bundle: Path, target: Path) -> Packed:
    """Write BUNDLE (every file checked against its bundle.json) to the archive TARGET."""
    compression = _compression(target)
    if compression is None:
        raise InputError(f"{target}: an archive's name ends in {', '.join(SUFFIXES)}; choose one of those")
    manifest_bytes = _manifest_bytes(bundle)
    records = layout.Manifest.from_bytes(manifest_bytes).files
    _refuse_extras(bundle, records)
    target = Path(os.path.abspath(target))
    if target.is_dir():
        raise InputError(f"{target} is a folder; give the archive's file name, e.g. {target}/imagefiles.tar.gz")
    if not target.parent.is_dir():
        raise InputError(f"{target.parent} is not a folder; create it, or write the archive elsewhere")
    if Path(os.path.realpath(target)).is_relative_to(Path(os.path.realpath(bundle))):
        raise InputError(f"{target} is inside the bundle {bundle}; write the archive outside it")
    fd, staged = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            # Neither closes raw: it is flushed and synced below, then renamed into place.
            packer = (
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL)
                if compression
                else None
            )
            # .tar: written here, each file's bytes copied by the kernel while a thread hashes
            # them; .tar.gz: through tarfile and gzip, which must see every byte anyway.
            writer = (  # entered just below
                _PlainTar(raw) if packer is None else tarfile.open(fileobj=packer, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
            )
            with progress.bytes_of("packing", sum(r.size for r in records.values())) as update, writer as tar:
                tar.copybufsize = CHUNK
                for path in _folders(records):
                    tar.addfile(_info(path, tarfile.DIRTYPE, layout.DIR_MODE, 0))
                for path in sorted([*records, layout.MANIFEST]):
                    if path == layout.MANIFEST:
                        info = _info(path, tarfile.REGTYPE, layout.FILE_MODE, len(manifest_bytes))
                        tar.addfile(info, io.BytesIO(manifest_bytes))
                    else:
                        _add_checked(tar, bundle, path, records[path], update)
            if packer is not None:
                packer.close()  # gzip's trailer
        os.chmod(staged, 0o644)
        os.replace(staged, target)
    except BaseException:
        if os.path.exists(staged):
            os.unlink(staged)
        raise
    return Packed(target, len(records) + 1, target.stat().st_size)


def check(archive: Path) -> Report:
    """Every member of ARCHIVE against the bundle.json inside it, without extracting."""
    found: dict[str, tuple[int, int, str]] = {}  # path -> (mode, size, sha256)
    folders: dict[str, int] = {}
    manifest_parts: list[bytes] | None = None
    if not Path(archive).is_file():
        raise BundlerError(f"{archive}: no such archive (a file ending in {', '.join(SUFFIXES)})")
    try:
        with (
            open(archive, "rb") as raw,
            progress.bytes_of("verifying", os.fstat(raw.fileno()).st_size) as update,
            _unpacked(_Counted(raw, update)) as stream,
            tarfile.open(fileobj=_Bounded(stream), mode="r:") as tar,
        ):
            for member in tar:
                path = _safe_name(archive, member)
                if path in found or path in folders:
                    raise BundlerError(
                        f"{archive}: {path!r} appears twice; an archive is input from another network: refusing it"
                    )
                if member.isdir():
                    folders[path] = stat.S_IMODE(member.mode)
                    continue
                if path == layout.MANIFEST and member.size > MANIFEST_LIMIT:
                    raise BundlerError(
                        f"{archive}: its {layout.MANIFEST} is {member.size} bytes, more than any bundle's"
                    )
                digest, size = hashlib.sha256(), 0
                handle = tar.extractfile(member)
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    if path == layout.MANIFEST:
                        manifest_parts = [*(manifest_parts or []), chunk]
                found[path] = (stat.S_IMODE(member.mode), size, digest.hexdigest())
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, OSError, ValueError, MemoryError) as exc:
        raise BundlerError(f"{archive}: not a readable archive ({exc or type(exc).__name__}); carry it again") from None
    manifest_bytes = b"".join(manifest_parts) if manifest_parts is not None else None
    if manifest_bytes is None:
        raise BundlerError(f"{archive} holds no {layout.MANIFEST}: it is not a bundle's archive")
    try:
        expected = layout.Manifest.from_bytes(manifest_bytes).files
    except (ValueError, MemoryError) as exc:
        raise BundlerError(f"{archive}: its {layout.MANIFEST} is not a bundle manifest ({exc})") from None
    manifest = found.pop(layout.MANIFEST)
    modified = [p for p, r in sorted(expected.items()) if p in found and found[p] != (r.mode, r.size, r.sha256)]
    if manifest[0] != layout.FILE_MODE:
        modified.append(layout.MANIFEST)
    needed = set(_folders(expected))
    modified += [f"{p}/" for p, mode in sorted(folders.items()) if p in needed and mode != layout.DIR_MODE]
    extra = (set(found) - set(expected)) | {f"{p}/" for p in folders if p not in needed}
    return Report(tuple(sorted(modified)), tuple(sorted(set(expected) - set(found))), tuple(sorted(extra)))


def _compression(path: Path) -> str | None:
    name = Path(path).name.lower()
    return next((kind for suffix, kind in SUFFIXES.items() if name.endswith(suffix) and name != suffix), None)


def _manifest_bytes(bundle: Path) -> bytes:
    layout.read_manifest(bundle)  # one clear line when it is missing or malformed
    return (bundle / layout.MANIFEST).read_bytes()


def _refuse_extras(bundle: Path, records: dict) -> None:
    from bundler import verify

    extra = sorted(set(verify.listed_files(bundle)) - set(records))
    if extra:
        raise BundlerError(
            f"{bundle} holds {len(extra)} file(s) its bundle.json does not list ({', '.join(extra[:3])}); "
            f"run bundler verify {bundle}, then save it again before packing"
        )


def _add_checked(tar: tarfile.TarFile, bundle: Path, path: str, record: layout.FileRecord, update=None) -> None:
    """Stream one file into the archive, hashing what goes in; refuse it unless it is the file
    bundle.json describes (a regular file, its size, its mode, its sha256)."""
    edited = BundlerError(
        f"{bundle}/{path} differs from bundle.json; run bundler verify {bundle}, then save it again before packing"
    )
    try:
        fd = os.open(bundle / path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise edited from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != record.size or stat.S_IMODE(info.st_mode) != record.mode:
            raise edited
        info = _info(path, tarfile.REGTYPE, record.mode, record.size)
        if isinstance(tar, _PlainTar):
            sha = tar.add_copied(info, fd, update)
        else:
            hashing = _Hashing(handle, update)
            tar.addfile(info, hashing)
            sha = hashing.digest.hexdigest()
        if sha != record.sha256 or os.pread(fd, 1, record.size):
            raise edited


def _folders(records) -> list[str]:
    return sorted({str(parent) for path in records for parent in PurePosixPath(path).parents if str(parent) != "."})


def _info(path: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _safe_name(archive: Path, member: tarfile.TarInfo) -> str:
    name = member.name
    parts = PurePosixPath(name).parts
    why = None
    if member.issparse():
        why = "is a sparse file, which a bundle never holds"
    elif not (member.isfile() or member.isdir()):
        why = "is a link or a device, which a bundle never holds"
    elif name.startswith("/") or not parts:
        why = "is an absolute path"
    elif ".." in parts or any(part in ("", ".") for part in name.rstrip("/").split("/")):
        why = "leaves the archive's folder"
    if why:
        raise BundlerError(f"{archive}: member {name!r} {why}; an archive is input from another network: refusing it")
    return name.rstrip("/")


class _PlainTar:
    """An uncompressed tar, as tarfile writes one (its own headers, 512-byte blocks, two empty
    blocks and a 10 KB record at the end), with file bytes copied by the kernel."""

    def __init__(self, raw):
        self.raw, self.offset, self.copybufsize = raw, 0, None

    def __enter__(self):
        return self

    def __exit__(self, kind, *_):
        if kind is None:
            self._write(tarfile.NUL * (tarfile.BLOCKSIZE * 2))
            remainder = self.offset % tarfile.RECORDSIZE
            if remainder:
                self._write(tarfile.NUL * (tarfile.RECORDSIZE - remainder))

    def addfile(self, info: tarfile.TarInfo, fileobj=None) -> None:
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if fileobj is not None:
            self._write(fileobj.read())
            self._pad()

    def add_copied(self, info: tarfile.TarInfo, source_fd: int, update) -> str:
        from bundler.digest import copy_range_hashing

        self.addfile(info)
        self.raw.flush()
        sha, copied = copy_range_hashing(source_fd, self.raw.fileno(), info.size, self.offset, update)
        self.offset += copied
        self.raw.seek(self.offset)
        self._pad()
        return sha

    def _write(self, data: bytes) -> None:
        self.raw.write(data)
        self.offset += len(data)

    def _pad(self) -> None:
        remainder = self.offset % tarfile.BLOCKSIZE
        if remainder:
            self._write(tarfile.NUL * (tarfile.BLOCKSIZE - remainder))


class _Bounded:
    """The archive's tar bytes as tarfile reads them: a single read larger than any header or
    data chunk is a crafted header (tarfile would hold it all in memory), refused."""

    def __init__(self, stream):
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > max(CHUNK, HEADER_LIMIT):
            raise ValueError("a header claims more bytes than a bundle's archive ever holds in one")
        return self.stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.stream.seek(offset, whence)

    def tell(self) -> int:
        return self.stream.tell()


@contextlib.contextmanager
def _unpacked(counted):
    """The tar inside: gunzipped when it starts as gzip does, else as it is (both seekable)."""
    head = counted.read(2)
    counted.seek(0)
    if head == b"\x1f\x8b":
        with gzip.GzipFile(fileobj=counted, mode="rb") as stream:
            yield stream
    else:
        yield counted


class _Counted:
    """The archive's raw bytes as they are read: the progress of a check."""

    def __init__(self, handle, update):
        self.handle, self.update = handle, update

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        if self.update is not None:
            self.update(len(chunk))
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()


class _Hashing:
    """A file as tarfile reads it, hashed on the way (and counted, for the progress bar)."""

    def __init__(self, handle, update=None):
        self.handle, self.digest, self.update = handle, hashlib.sha256(), update

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.digest.update(chunk)
        if self.update is not None:
            self.update(len(chunk))
        return chunk
