"""The local model registry (the "workspace"): NAME -> integer versions -> files.

Layout under the registry home:

    blobs/sha256/<ab>/<sha256>     file contents, stored once per distinct content
    models/<name>/<version>.json   one record per version: files, sizes, sha256, metadata
    tmp/                           staging of the registers running now
    lock                           held shared by every register, exclusively to clean up

A version appears whole or not at all: its record is written to tmp/ first and then
*hard-linked* to its final name, which fails if another `register` claimed that number
first, so concurrent registrations of one name get distinct versions without a lock.
Files are streamed in chunks, so memory does not grow with model size. What a killed
register left in tmp/ is removed by the next register that finds no other one running
(it takes the lock exclusively for that moment), or by `bundler gc`, which also removes
stored files no version refers to.

This module never prints; it raises BundlerError subclasses.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bundler import leftovers, progress, secret_rules, syscalls
from bundler.digest import copy_hashing, sha256_file
from bundler.errors import InputError, ModelNotFound, RegistryError
from bundler.sources import Rules, Walk, walk

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
REF_PATTERN = re.compile(r"(?P<name>[^:]+)(?::(?P<version>[^:]*))?")


@dataclass(frozen=True)
class ModelRef:
    """NAME or NAME:VERSION as a user wrote it; version None means the latest."""

    name: str
    version: int | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"


@dataclass(frozen=True)
class ModelFile:
    path: str  # POSIX path relative to the model's folder
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    files: tuple[ModelFile, ...]
    description: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    properties: tuple[tuple[str, str], ...] = ()  # facts about the model (framework...), from the Python API

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    def to_json(self) -> dict:
        return {
            "ref": self.ref,
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "tags": dict(self.tags),
            "properties": dict(self.properties),
            "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in self.files],
        }


@dataclass(frozen=True)
class Registration:
    """What `register` did: the new version, what it left out (to be named), what it freed."""

    version: ModelVersion
    skipped_secrets: tuple[str, ...] = ()
    skipped_registries: tuple[str, ...] = ()
    skipped_bundles: tuple[str, ...] = ()
    freed_bytes: int = 0  # left in tmp/ by an interrupted register, and removed now

    def to_json(self) -> dict:
        return {
            **self.version.to_json(),
            "skipped_secrets": list(self.skipped_secrets),
            "skipped_registries": list(self.skipped_registries),
            "skipped_bundles": list(self.skipped_bundles),
            "freed_bytes": self.freed_bytes,
        }


@dataclass(frozen=True)
class Collected:
    """What `gc` removed."""

    tmp_bytes: int
    blob_count: int
    blob_bytes: int


def validate_name(name: str, what: str = "model name") -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InputError(
            f"invalid {what} {name!r}: use 1-255 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return name


def parse_ref(text: str) -> ModelRef:
    """Parse NAME[:VERSION]; reject anything path-like or malformed."""
    match = REF_PATTERN.fullmatch(text)
    if not match:
        raise InputError(f"invalid model reference {text!r}: expected NAME or NAME:VERSION, e.g. diabetes:1")
    name, version = match["name"], match["version"]
    validate_name(name)
    if version is None:
        return ModelRef(name)
    if not version.isascii() or not version.isdigit() or int(version) < 1:
        raise InputError(f"invalid model reference {text!r}: the version must be a whole number from 1, e.g. {name}:1")
    return ModelRef(name, int(version))


def parse_tags(tags) -> dict[str, str]:
    """--tag KEY=VALUE flags as a mapping."""
    parsed = {}
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key:
            raise InputError(f"--tag {tag!r}: expected KEY=VALUE, e.g. --tag framework=sklearn")
        parsed[key] = value
    return parsed


def _text_mapping(values, what: str) -> dict[str, str]:
    """Tags or properties: text keys and values (the Python API may pass anything)."""
    if values is not None and not isinstance(values, dict):
        raise InputError(f"{what}: a mapping of text to text, e.g. {{'team': 'risk'}}, not {type(values).__name__}")
    values = dict(values or {})
    for key, value in values.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise InputError(f"{what}: {key!r}: {value!r}: keys and values must be text (keys non-empty)")
    return values


def default_home() -> Path:
    return Path(os.environ.get("BUNDLER_HOME") or Path.home() / ".bundler")


class Registry:
    def __init__(self, home: Path):
        self.home = Path(home)

    # -- reading ---------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.home.joinpath("blobs", "sha256", sha256[:2], sha256)  # one join: a tokenizer asks 2,000 times

    def names(self) -> list[str]:
        """Names with at least one version (a register that failed may leave an empty folder)."""
        models = self.home / "models"
        if not models.is_dir():
            return []
        names = (p.name for p in models.iterdir() if p.is_dir() and NAME_PATTERN.fullmatch(p.name))
        return sorted(name for name in names if self.versions(name))

    def versions(self, name: str) -> list[int]:
        folder = self.home / "models" / name
        if not folder.is_dir():
            return []
        return sorted(int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit())

    def resolve(self, ref: ModelRef) -> ModelVersion:
        validate_name(ref.name)  # a name becomes a path: never `..`, whoever built the ref
        versions = self.versions(ref.name)
        if not versions:
            known = ", ".join(self.names()) or "none"
            raise ModelNotFound(
                f"model {ref.name!r} is not registered in {self.home} (registered: {known}); "
                f"register it with: bundler register PATH --name {ref.name}"
            )
        version = versions[-1] if ref.version is None else ref.version
        if version not in versions:
            raise ModelNotFound(
                f"model {ref.name!r} has no version {version} (versions: "
                f"{', '.join(map(str, versions))}); use one of those, e.g. {ref.name}:{versions[-1]}"
            )
        return self._read_record(ref.name, version)

    def _read_record(self, name: str, version: int) -> ModelVersion:
        path = self.home / "models" / name / f"{version}.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            files = tuple(ModelFile(_safe_path(f["path"]), f["sha256"], int(f["size"])) for f in data["files"])
            tags = tuple(sorted((str(k), str(v)) for k, v in data.get("tags", {}).items()))
            properties = tuple(sorted((str(k), str(v)) for k, v in data.get("properties", {}).items()))
            return ModelVersion(name, version, files, data.get("description", ""), tags, properties)
        except RecursionError:
            raise RegistryError(
                f"registry record {path} is unreadable (nested too deeply); re-register the model"
            ) from None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RegistryError(f"registry record {path} is unreadable ({exc}); re-register the model") from exc

    # -- writing ---------------------------------------------------------------

    def register(
        self,
        source: Path,
        name: str,
        description: str = "",
        tags: dict[str, str] | None = None,
        properties: dict[str, str] | None = None,
    ) -> Registration:
        if not isinstance(name, str):
            raise InputError(f"the model name must be text, not {type(name).__name__}")
        validate_name(name)
        if not isinstance(description, str):
            raise InputError(f"the description must be text, not {type(description).__name__}")
        tags, properties = _text_mapping(tags, "tags"), _text_mapping(properties, "properties")
        found = _model_files(Path(source), self.home)
        tmp = self.home / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        with self._lock() as lock_fd:
            freed = self._remove_leftovers(lock_fd, tmp)
            total = sum(path.stat().st_size for _, path in found.files)
            with progress.bytes_of("registering", total) as update:
                stored = tuple(ModelFile(rel, *self._store_blob(path, tmp, update)) for rel, path in found.files)
            # Every stored file on disk before the version that names them: one flush of the
            # file system, not one per file (a tokenizer's 2,000 files would wait 2,000 times).
            _sync_file_system(tmp)
            record = {
                "name": name,
                "description": description,
                "tags": dict(sorted(tags.items())),
                "files": [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in stored],
            }
            if properties:  # only when given: records of plain registers stay as they were
                record["properties"] = dict(sorted(properties.items()))
            version = self._claim_version(name, record, tmp)
        model = ModelVersion(
            name, version, stored, description, tuple(sorted(tags.items())), tuple(sorted(properties.items()))
        )
        return Registration(model, found.skipped_secrets, found.skipped_registries, found.skipped_bundles, freed)

    def gc(self) -> Collected:
        """Remove what interrupted registers left: staging files, and stored files no version refers to."""
        tmp = self.home / "tmp"
        if not self.home.is_dir():
            return Collected(0, 0, 0)
        with self._lock() as lock_fd:
            if not _take_exclusively(lock_fd):
                raise RegistryError(f"a register is running in {self.home}; run bundler gc again when it ends")
            tmp_bytes = _empty_tmp(tmp)
            records = (self._read_record(name, v) for name in self.names() for v in self.versions(name))
            used = {f.sha256 for record in records for f in record.files}
            count = size = 0
            for blob in sorted((self.home / "blobs" / "sha256").glob("*/*")):
                if blob.name not in used and blob.is_file() and not blob.is_symlink():
                    size += blob.stat().st_size
                    blob.unlink()
                    count += 1
        return Collected(tmp_bytes, count, size)

    @contextlib.contextmanager
    def _lock(self):
        """The registry's lock, held shared for as long as this process writes to the registry."""
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.home / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield fd
        finally:
            os.close(fd)

    def _remove_leftovers(self, lock_fd: int, tmp: Path) -> int:
        """Empty tmp/ of what killed registers left, when no other register runs (else leave it)."""
        if not tmp.is_dir() or not any(tmp.iterdir()):
            return 0
        try:
            return _empty_tmp(tmp) if _take_exclusively(lock_fd) else 0
        finally:
            # Shared again, also after a failed attempt: flock drops the lock it cannot convert.
            fcntl.flock(lock_fd, fcntl.LOCK_SH)

    def _store_blob(self, path: Path, tmp: Path, update=None) -> tuple[str, int]:
        fd, staged = tempfile.mkstemp(dir=tmp, prefix="blob-")
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                sha, size = copy_hashing(src, out, update)
            final = self.blob_path(sha)
            if final.exists() and _holds(final, sha, size):
                return sha, size
            # Missing, or damaged on disk: a new version must not reuse a corrupt blob, so put this good copy in.
            os.chmod(staged, 0o444)
            try:
                os.replace(staged, final)  # atomic; identical content makes a race harmless
            except FileNotFoundError:  # its folder's first blob (asking first costs a tokenizer 2,000 mkdirs)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
            return sha, size
        except OSError as exc:
            raise RegistryError(f"cannot store {path} in the registry at {self.home}: {exc.strerror or exc}") from exc
        finally:
            if os.path.exists(staged):
                os.unlink(staged)

    def _claim_version(self, name: str, record: dict, tmp: Path) -> int:
        folder = self.home / "models" / name
        folder.mkdir(parents=True, exist_ok=True)
        fd, staged = tempfile.mkstemp(dir=tmp, prefix="version-", suffix=".json")
        try:
            version = (self.versions(name) or [0])[-1] + 1
            while True:
                record["version"] = version
                with open(fd, "w", encoding="utf-8", closefd=False) as out:
                    out.seek(0)
                    out.truncate()
                    json.dump(record, out, indent=2, sort_keys=True)
                    out.write("\n")
                    out.flush()
                    os.fsync(out.fileno())
                try:
                    os.link(staged, folder / f"{version}.json")
                    return version
                except FileExistsError:
                    version += 1
        finally:
            os.close(fd)
            os.unlink(staged)


def _model_files(source: Path, home: Path):
    """The files to register: (path inside the model folder, file on disk), sorted, and what was left out.

    A single file keeps its name; a directory keeps its own name as the top folder,
    as Azure ML does, so `AZUREML_MODEL_DIR/<dir name>/...` resolves the same way.
    A folder's secrets (.env, .git/, keys) are left out by the rules `save` applies to
    sources, and so is a model registry, this one above all; a single file that looks like
    a secret is refused.
    """
    if not source.exists():
        raise InputError(f"cannot register {source}: no such file or directory")
    _check_utf8_name(source)
    if source.is_file():
        _check_single_file(source)
        return Walk(((source.name, source),), ())
    # abspath, not resolve: `..` and `.` get their real names, but a linked folder keeps the link's name.
    folder = Path(os.path.abspath(source))
    if folder.resolve() == home.resolve() or folder.resolve().is_relative_to(home.resolve()):
        raise InputError(f"cannot register {source}: it is the model registry itself ({home})")
    rules = Rules(exclude=frozenset({home.resolve()}))
    found = walk(folder, f"the model folder {source}", "then register again", rules)
    files = tuple((f"{folder.name}/{rel}", path) for rel, path in found.files)
    secrets = tuple(f"{folder.name}/{rel}" for rel in found.skipped_secrets)
    registries = tuple(f"{folder.name}/{rel}" for rel in found.skipped_registries)
    bundles = tuple(f"{folder.name}/{rel}" for rel in found.skipped_bundles)
    if not files:
        left_out = f" (left out as secrets: {', '.join(secrets)})" if secrets else ""
        raise InputError(f"cannot register {source}: the directory holds no files{left_out}")
    return Walk(files, secrets, registries, bundles)


def _check_utf8_name(source: Path) -> None:
    """The name a file or folder is registered under must be UTF-8: it enters bundle.json."""
    try:
        Path(os.path.abspath(source)).name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(source).decode("utf-8", "backslashreplace")
        raise InputError(
            f"cannot register {shown}: the name is not UTF-8, which a bundle cannot carry; rename it"
        ) from None


def _check_single_file(source: Path) -> None:
    with open(source, "rb") as handle:
        head = handle.read(secret_rules.HEAD_BYTES)
        rest = lambda: head + handle.read(secret_rules.SERVICE_ACCOUNT_LIMIT)  # noqa: E731 - read only if needed
        key = secret_rules.is_key_content(head, source.name, rest)
    if secret_rules.is_secret_name(source.name) or key:
        raise InputError(
            f"cannot register {source}: it looks like a secret (a credential file or a key), and a model is "
            "copied into every bundle made from it; register the model's own files"
        )


def _sync_file_system(folder: Path) -> None:
    """Flush the file system holding FOLDER (syncfs), else every file system (sync)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if not syscalls.sync_file_system(fd):
            os.sync()
    finally:
        os.close(fd)


def _empty_tmp(tmp: Path) -> int:
    """Remove what is in tmp/ (the caller holds the registry lock exclusively); the bytes freed."""
    if not tmp.is_dir():
        return 0
    tmp_fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return leftovers.remove_stale(tmp_fd, os.listdir(tmp_fd))
    finally:
        os.close(tmp_fd)


def _take_exclusively(lock_fd: int) -> bool:
    """Turn this process's shared hold of the registry lock exclusive, if no other process holds
    it. When it cannot, the shared hold may be gone too (flock converts by dropping first): the
    caller takes it again."""
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _holds(blob: Path, sha256: str, size: int) -> bool:
    """Whether a stored blob really holds this content (checked only when the content is registered again)."""
    return blob.stat().st_size == size and sha256_file(blob)[0] == sha256


def _safe_path(path: str) -> str:
    """A record's file path must stay inside the model's folder: it becomes a path in the bundle."""
    if not isinstance(path, str) or path.startswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError(f"file path {path!r} leaves the model folder")
    return path
