"""Select the source-directory files that ship with the entry script.

Rules are gitignore syntax (pathspec): the built-in defaults below, then the source
directory's own `.bundlerignore`. Files that look like secrets (secret_rules.py: by name,
or by content such as a private key) are left out and reported by name, whatever the
rules say; a symlink to a secret counts as one. A bundler model registry is never entered.
A symlink that leaves the folder, loops or dangles, a folder that cannot be read, and a
file name that is not UTF-8 (a manifest cannot hold it) are refused. `register` walks a
model folder with the same rules (`walk`).

This module reads the source tree only; it never copies or writes anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bundler import secret_rules
from bundler.errors import SourceError

IGNORE_FILE = ".bundlerignore"

# Build and tool litter: never useful inside an image.
# fmt: off
DEFAULT_IGNORES = (
    ".hg/", ".svn/", "__pycache__/", "*.py[cod]", ".venv/", "venv/", ".mypy_cache/", ".pytest_cache/",
    ".ipynb_checkpoints/", ".DS_Store", ".idea/", ".vscode/", ".tox/", "*.egg-info/", IGNORE_FILE,
    ".bundler-tmp-*/",  # a save in progress (or killed) beside an output folder
)
# fmt: on


@dataclass(frozen=True)
class SourceFile:
    path: str  # POSIX path relative to the source directory
    file: Path
    executable: bool


@dataclass(frozen=True)
class SourceSelection:
    files: tuple[SourceFile, ...]
    skipped_secrets: tuple[str, ...]
    skipped_registries: tuple[str, ...] = ()
    skipped_bundles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Walk:
    files: tuple[tuple[str, Path], ...]  # (POSIX path relative to the walked folder, file), sorted
    skipped_secrets: tuple[str, ...]
    skipped_registries: tuple[str, ...] = ()  # folders holding a model registry: never entered
    skipped_bundles: tuple[str, ...] = ()  # saved bundles (an earlier ./imagefiles): never entered


@dataclass(frozen=True)
class Rules:
    """What a walk leaves out besides secrets, and what the user says is not a secret."""

    ignored: object = None  # a pathspec of ignore rules (source directories only)
    exclude: frozenset[Path] = frozenset()  # folders never entered: the output, the registry in use
    allowed: frozenset[Path] = field(default_factory=frozenset)  # files or folders that only look secret


def _spec(patterns):
    import pathspec  # lazy: only commands that walk a folder need it

    return pathspec.GitIgnoreSpec.from_lines(patterns)


def select(source_dir: Path, exclude: tuple[Path, ...] = (), allowed: tuple[Path, ...] = ()) -> SourceSelection:
    """The files to ship from source_dir, sorted; `exclude` holds folders never to enter (the
    output, the registry), `allowed` files the user says are not secrets."""
    user_rules: list[str] = []
    ignore_file = source_dir / IGNORE_FILE
    if ignore_file.is_file():
        user_rules = ignore_file.read_text(encoding="utf-8", errors="replace").splitlines()
    rules = Rules(
        ignored=_spec(DEFAULT_IGNORES + tuple(user_rules)),
        exclude=frozenset(p.resolve() for p in exclude),
        allowed=frozenset(Path(os.path.abspath(p)) for p in allowed),
    )
    found = walk(source_dir, f"the source directory {source_dir}", "or add it to .bundlerignore", rules)
    files = tuple(SourceFile(rel, path, bool(path.stat().st_mode & 0o111)) for rel, path in found.files)
    return SourceSelection(files, found.skipped_secrets, found.skipped_registries, found.skipped_bundles)


def walk(folder: Path, what: str, fix: str, rules: Rules = Rules()) -> Walk:
    """The regular files under `folder` minus secrets; both `save --source-dir` and `register` walk with it.

    `what` names the folder in errors ("the model folder m"); `fix` ends each error's advice. Secrets go
    first, then the ignore rules and excluded folders, so ignored entries are never examined. A folder
    that cannot be listed is an error, never a silent gap in the result.
    """
    walker = _Walker(folder, what, fix, rules)

    def unreadable(exc: OSError) -> None:
        raise SourceError(f"cannot read the folder {exc.filename} ({exc.strerror or exc}); fix its permissions, {fix}")

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable, followlinks=True):
        current = Path(dirpath)
        rel_dir = current.relative_to(folder).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        # Reached through a linked folder? Then names are judged where they really are, too.
        real_prefix = _relative(Path(os.path.realpath(current)), walker.root) + "/"
        real_prefix = "" if real_prefix == "./" else real_prefix
        dirnames[:] = [name for name in sorted(dirnames) if walker.enters(current, name, prefix + name + "/")]
        for name in sorted(filenames):
            walker.take(current / name, prefix + name, real_prefix + name if real_prefix != prefix else None)
    return Walk(
        tuple(sorted(walker.files)),
        tuple(sorted(walker.secrets)),
        tuple(sorted(walker.registries)),
        tuple(sorted(walker.bundles)),
    )


class _Walker:
    """What one walk found so far, and the rules it judges each entry by."""

    def __init__(self, folder: Path, what: str, fix: str, rules: Rules):
        self.folder, self.root, self.what, self.fix, self.rules = folder, folder.resolve(), what, fix, rules
        self.files: list[tuple[str, Path]] = []
        self.secrets: list[str] = []
        self.registries: list[str] = []
        self.bundles: list[str] = []

    def secret_name(self, path: Path, rel: str) -> bool:
        return secret_rules.is_secret_name(rel) and not secret_rules.is_allowed(path, self.rules.allowed)

    def ignored(self, rel: str) -> bool:
        return bool(self.rules.ignored and self.rules.ignored.match_file(rel))

    def enters(self, current: Path, name: str, rel: str) -> bool:
        """Whether the walk goes into the folder `name` of `current` (`rel` ends in /)."""
        path = current / name
        if self.secret_name(path, rel):
            self.secrets.append(rel)
            return False
        if self.ignored(rel) or path.resolve() in self.rules.exclude:
            return False  # the output folder itself, too
        if _is_registry(path):
            self.registries.append(rel)
            return False
        if _is_bundle(path):
            self.bundles.append(rel)
            return False
        if path.is_symlink():
            # A linked folder ships at the link's path, as a linked file does; not a secret
            # under another name, and not a folder that holds the link (an endless tree).
            target = self._target(path)
            if self.secret_name(target, _relative(target, self.root) + "/"):
                self.secrets.append(rel)
                return False
            if target in _real_folders(self.folder, current):
                raise SourceError(
                    f"{path}: symlink loop (it leads to {target}, which holds the link); remove the link, {self.fix}"
                )
        _utf8(name, path, self.fix)
        return True

    def take(self, path: Path, rel: str, real_rel: str | None) -> None:
        """Keep the file at `rel` unless it is a secret or ignored; `real_rel` is where it really
        is, when the walk reached it through a linked folder."""
        if self.secret_name(path, rel) or (real_rel is not None and self.secret_name(path, real_rel)):
            self.secrets.append(rel)
        elif self.ignored(rel):
            return
        elif path.is_symlink() and self.secret_name(path, _relative(self._target(path), self.root)):
            self.secrets.append(rel)  # settings.txt -> .env would ship the secret under an innocent name
        elif path.is_file():
            _utf8(path.name, path, self.fix)
            if _holds_a_key(path) and not secret_rules.is_allowed(path, self.rules.allowed):
                self.secrets.append(rel)  # a private key or service-account key, whatever its name
            else:
                self.files.append((rel, path))

    def _target(self, path: Path) -> Path:
        return _link_target(path, self.root, self.what, self.fix)


def _is_registry(path: Path) -> bool:
    """A bundler model registry (any, not only the one in use): it holds every registered model."""
    return (path / "blobs" / "sha256").is_dir() and (path / "models").is_dir()


def _is_bundle(path: Path) -> bool:
    """A saved bundle (another output folder than this save's): it holds copies of models."""
    return (path / "bundle.json").is_file() and (path / "Dockerfile").is_file()


def _holds_a_key(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(secret_rules.HEAD_BYTES)

            def read_all():
                return None if path.stat().st_size > secret_rules.SERVICE_ACCOUNT_LIMIT else head + handle.read()

            return secret_rules.is_key_content(head, path.name, read_all)
    except OSError:
        return False  # unreadable: the copy names it, with the fix


def _utf8(name: str, path: Path, fix: str) -> str:
    """A name that is not UTF-8 cannot be written into bundle.json or the Dockerfile's world."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise SourceError(
            f"{shown}: the file name is not UTF-8, which a bundle cannot carry; rename it, {fix}"
        ) from None
    return name


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _real_folders(folder: Path, current: Path) -> set[Path]:
    """The real folders from `folder` down to `current` (which the walk may have reached through links)."""
    chain, here = {Path(os.path.realpath(folder))}, folder
    for part in current.relative_to(folder).parts:
        here = here / part
        chain.add(Path(os.path.realpath(here)))
    return chain


def _link_target(path: Path, root: Path, what: str, fix: str) -> Path:
    """Where a symlink leads; refused if it loops, dangles, or leaves `root` (it would carry an outside file in)."""
    try:
        target = path.resolve()
    except (RuntimeError, OSError):  # a loop: RuntimeError up to Python 3.12, OSError (ELOOP) after
        raise SourceError(f"{path}: symlink loop (the link leads back to itself); remove the link, {fix}") from None
    if not target.is_relative_to(root):
        raise SourceError(f"{path}: symlink to {target}, outside {what}; copy the file in or remove the link, {fix}")
    if not target.exists():
        raise SourceError(f"{path}: symlink to {target}, which does not exist; remove the link, {fix}")
    return target
