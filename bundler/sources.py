"""Select the source-directory files that ship with the entry script.

Rules are gitignore syntax (pathspec): the built-in defaults below, then the source
directory's own `.bundlerignore`. Files that look like secrets are reported by name so
the user sees what was left out. A symlink that leaves the source directory is refused.

This module reads the source tree only; it never copies or writes anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bundler.errors import SourceError

IGNORE_FILE = ".bundlerignore"

# Build and tool litter: never useful inside an image.
DEFAULT_IGNORES = (
    ".hg/", ".svn/", "__pycache__/", "*.py[cod]", ".venv/", "venv/", ".mypy_cache/",
    ".pytest_cache/", ".ipynb_checkpoints/", ".DS_Store", ".idea/", ".vscode/", ".tox/",
    "*.egg-info/", IGNORE_FILE,
    ".bundler-tmp-*/",  # a save in progress (or killed) beside an output folder
)
# Secrets: left out AND named in the output, so nobody ships a key by accident.
# .git/ is here because its config can hold credentials in remote URLs.
SECRET_IGNORES = (
    ".git/",
    ".env", ".env.*", "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_dsa*", "id_ecdsa*",
    "id_ed25519*", ".ssh/", ".aws/", ".azure/", ".netrc", ".pypirc", ".npmrc", ".git-credentials",
    ".docker/config.json", "credentials.json", "*.kdbx",
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


def _spec(patterns):
    import pathspec  # lazy: only `save` with a source directory needs it

    return pathspec.GitIgnoreSpec.from_lines(patterns)


def select(source_dir: Path, exclude: tuple[Path, ...] = ()) -> SourceSelection:
    """The files to ship from source_dir, sorted; `exclude` holds folders never to enter (the output)."""
    root = source_dir.resolve()
    excluded = {p.resolve() for p in exclude}
    user_rules: list[str] = []
    ignore_file = source_dir / IGNORE_FILE
    if ignore_file.is_file():
        user_rules = ignore_file.read_text(encoding="utf-8", errors="replace").splitlines()
    ignored = _spec(DEFAULT_IGNORES + tuple(user_rules))
    secret = _spec(SECRET_IGNORES)

    files: list[SourceFile] = []
    secrets: list[str] = []
    for dirpath, dirnames, filenames in os.walk(source_dir):
        current = Path(dirpath)
        rel_dir = current.relative_to(source_dir).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        kept_dirs = []
        for name in sorted(dirnames):
            path = current / name
            rel = prefix + name + "/"
            _check_link(path, root, source_dir)
            if path.resolve() in excluded or path.is_symlink():
                continue  # the output itself; linked folders inside the tree are walked where they are
            if secret.match_file(rel):
                secrets.append(rel)
            elif not ignored.match_file(rel):
                kept_dirs.append(name)
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            path = current / name
            rel = prefix + name
            _check_link(path, root, source_dir)
            if secret.match_file(rel):
                secrets.append(rel)
                continue
            if ignored.match_file(rel) or not path.is_file():
                continue
            files.append(SourceFile(rel, path, bool(path.stat().st_mode & 0o111)))
    return SourceSelection(tuple(sorted(files, key=lambda f: f.path)), tuple(sorted(secrets)))


def refuse_link_outside(path: Path, root: Path, what: str, fix: str) -> None:
    """A symlink whose target leaves `root` would carry an outside file into the bundle."""
    if path.is_symlink():
        target = path.resolve()
        if not target.is_relative_to(root):
            raise SourceError(f"{path}: symlink to {target}, outside {what}; {fix}")


def _check_link(path: Path, root: Path, source_dir: Path) -> None:
    refuse_link_outside(path, root, f"the source directory {source_dir}",
                        "copy the file in, or add the link to .bundlerignore")
