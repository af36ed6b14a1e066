"""Select the source-directory files that ship with the entry script.

Rules are gitignore syntax (pathspec): the built-in defaults below, then the source
directory's own `.bundlerignore`. Files that look like secrets are reported by name so
the user sees what was left out; a symlink to a secret counts as one. A symlink that
leaves the folder, loops or dangles, and a folder that cannot be read, are refused.
`register` walks a model folder with the same secret rules (`walk`).

This module reads the source tree only; it never copies or writes anything.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from bundler.errors import SourceError

IGNORE_FILE = ".bundlerignore"

# Build and tool litter: never useful inside an image.
DEFAULT_IGNORES = (
    ".hg/",
    ".svn/",
    "__pycache__/",
    "*.py[cod]",
    ".venv/",
    "venv/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ipynb_checkpoints/",
    ".DS_Store",
    ".idea/",
    ".vscode/",
    ".tox/",
    "*.egg-info/",
    IGNORE_FILE,
    ".bundler-tmp-*/",  # a save in progress (or killed) beside an output folder
)
# Secrets: left out AND named in the output, so nobody ships a key by accident. Matched
# case-insensitively (SERVER.PEM is as secret as server.pem), so keep these lower-case.
# .git/ is here because its config can hold credentials in remote URLs. `credentials` is the
# AWS credentials file; `!credentials/` keeps a code package of that name (credentials.py ships too).
SECRET_IGNORES = (
    "credentials",
    "!credentials/",  # first: the last matching rule wins, so nothing below is undone
    ".git/",
    ".env",
    ".env.*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    ".ssh/",
    ".aws/",
    ".azure/",
    ".netrc",
    ".pypirc",
    ".npmrc",
    ".git-credentials",
    "**/.docker/config.json",
    "credentials.json",
    "*.kdbx",
)


@dataclass(frozen=True)
class SourceFile:
    path: str  # POSIX path relative to the source directory
    file: Path
    executable: bool


@dataclass(frozen=True)
class SourceSelection:
    files: tuple[SourceFile, ...]
    skipped_secrets: tuple[str, ...]


@dataclass(frozen=True)
class Walk:
    files: tuple[tuple[str, Path], ...]  # (POSIX path relative to the walked folder, file), sorted
    skipped_secrets: tuple[str, ...]


def _spec(patterns):
    import pathspec  # lazy: only commands that walk a folder need it

    return pathspec.GitIgnoreSpec.from_lines(patterns)


@functools.lru_cache(maxsize=1)
def _secret_spec():
    return _spec(SECRET_IGNORES)


def is_secret(rel: str) -> bool:
    """Whether a POSIX path relative to a walked folder (folders end in /) looks like a secret."""
    return _secret_spec().match_file(rel.lower())


def select(source_dir: Path, exclude: tuple[Path, ...] = ()) -> SourceSelection:
    """The files to ship from source_dir, sorted; `exclude` holds folders never to enter (the output)."""
    user_rules: list[str] = []
    ignore_file = source_dir / IGNORE_FILE
    if ignore_file.is_file():
        user_rules = ignore_file.read_text(encoding="utf-8", errors="replace").splitlines()
    found = walk(
        source_dir,
        f"the source directory {source_dir}",
        "or add it to .bundlerignore",
        ignored=_spec(DEFAULT_IGNORES + tuple(user_rules)),
        exclude=frozenset(p.resolve() for p in exclude),
    )
    files = tuple(SourceFile(rel, path, bool(path.stat().st_mode & 0o111)) for rel, path in found.files)
    return SourceSelection(files, found.skipped_secrets)


def walk(folder: Path, what: str, fix: str, ignored=None, exclude: frozenset[Path] = frozenset()) -> Walk:
    """The regular files under `folder` minus secrets; both `save --source-dir` and `register` walk with it.

    `what` names the folder in errors ("the model folder m"); `fix` ends each error's advice. Secrets go
    first, then `ignored` (a pathspec) and `exclude` (folders never entered), so ignored entries are never
    examined. A folder that cannot be listed is an error, never a silent gap in the result.
    """
    root = folder.resolve()
    files: list[tuple[str, Path]] = []
    secrets: list[str] = []

    def unreadable(exc: OSError) -> None:
        raise SourceError(f"cannot read the folder {exc.filename} ({exc.strerror or exc}); fix its permissions, {fix}")

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable, followlinks=True):
        current = Path(dirpath)
        rel_dir = current.relative_to(folder).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        # Reached through a linked folder? Then names are judged where they really are, too.
        real_prefix = Path(os.path.realpath(current)).relative_to(root).as_posix() + "/"
        real_prefix = "" if real_prefix == "./" else real_prefix
        kept_dirs = []
        for name in sorted(dirnames):
            path, rel = current / name, prefix + name + "/"
            if is_secret(rel):
                secrets.append(rel)
            elif (ignored and ignored.match_file(rel)) or (exclude and path.resolve() in exclude):
                continue  # the output folder itself, too
            elif path.is_symlink():
                # A linked folder ships at the link's path, as a linked file does; not a secret
                # under another name, and not a folder that holds the link (an endless tree).
                target = _link_target(path, root, what, fix)
                if is_secret(target.relative_to(root).as_posix() + "/"):
                    secrets.append(rel)
                elif target in _real_folders(folder, current):
                    raise SourceError(
                        f"{path}: symlink loop (it leads to {target}, which holds the link); remove the link, {fix}"
                    )
                else:
                    kept_dirs.append(name)
            else:
                kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            path, rel = current / name, prefix + name
            if is_secret(rel) or (real_prefix != prefix and is_secret(real_prefix + name)):
                secrets.append(rel)
            elif ignored and ignored.match_file(rel):
                continue
            elif path.is_symlink() and is_secret(_link_target(path, root, what, fix).relative_to(root).as_posix()):
                secrets.append(rel)  # settings.txt -> .env would ship the secret under an innocent name
            elif path.is_file():
                files.append((rel, path))
    return Walk(tuple(sorted(files)), tuple(sorted(secrets)))


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
