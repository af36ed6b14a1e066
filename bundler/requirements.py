"""Read pip requirement files the way pip does, enough to know what a bundle must carry.

A requirements file is copied into the bundle verbatim, and `docker build` installs from it
far from this machine. So, before saving: the files it includes (`-r`, `-c`) must ship with
it, from its folder (a link leading elsewhere, to a netrc say, is refused); a line naming a
path on this machine (`./pkg`, `-e .`, `file:`, `-f ./wheels`) cannot work in the build
and is refused; a credential in a URL (user info, or a token or signature in its query:
credentials.py) would enter the bundle and is refused, in comments too (pip expands
`${VAR}`, so `https://${USER}:${TOKEN}@host` is fine); a conda file given as requirements is
named for what it is; and packages not pinned to one version are reported, since each
build may install different ones.

`parse` is pure. `collect` reads the requirement files and nothing else.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from bundler import credentials
from bundler.errors import InputError

_COMMENT = re.compile(r"(^|\s+)#.*$")
_HASH_OPTION = re.compile(r"(^|\s)--(hash|require-hashes)\b")
_NAME = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*(.*)", re.S)
_EXACT = re.compile(r"===?\s*([^\s,;*]+)\s*$")
# A conda environment file passed as requirements: its top-level keys, which pip would choke on.
_CONDA_KEY = re.compile(r"^(?:name|channels|dependencies)\s*:", re.M)
CREDENTIAL_FIX = (
    "a bundle never carries one: write ${VARIABLE} in its place (pip expands it) and supply it at build time"
)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_INCLUDE_OPTIONS = {"-r", "--requirement", "-c", "--constraint"}
_EDITABLE = {"-e", "--editable"}
LOCAL_FIX = (
    "the image build cannot see this machine's files; build a wheel (pip wheel), publish it to "
    "your package index and require it by name and version"
)


class RequirementsError(InputError):
    """A requirements file the image build could not use, or one that would carry a secret."""


@dataclass(frozen=True)
class Requirement:
    name: str  # as written, or the URL for a direct reference
    pin: str | None  # the one version allowed (== or ===), else None
    line: int
    has_marker: bool = False  # "; python_version < '3.10'": whether it applies is pip's business
    direct: bool = False  # a URL: fixed by its address, not a version

    @property
    def pinned(self) -> bool:
        return self.direct or self.pin is not None


@dataclass(frozen=True)
class Parsed:
    requirements: tuple[Requirement, ...]
    includes: tuple[tuple[int, str], ...]  # (line, path) of each -r / -c file on this machine
    problems: tuple[tuple[int, str], ...]  # (line, what is wrong and how to fix it)
    local_find_links: tuple[tuple[int, str], ...] = ()  # -f FOLDER: only --vendor can carry what it finds
    hashed: bool = False  # --hash or --require-hashes: pip then checks hashes of all it installs in that run


@dataclass(frozen=True)
class RequirementFiles:
    files: tuple[tuple[str, Path], ...]  # (POSIX path relative to the top file's folder, file); top first
    requirements: tuple[Requirement, ...]
    hashed: bool = False  # see Parsed.hashed

    @property
    def unpinned(self) -> tuple[str, ...]:
        return tuple(sorted({r.name for r in self.requirements if not r.pinned}, key=str.lower))


def logical_lines(text: str):
    """(first physical line number, text) with continuations joined and comments removed, as pip does."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        line = _COMMENT.sub("", pending + raw).strip()
        pending = ""
        if line:
            yield start, line
    if pending.strip():
        yield start, _COMMENT.sub("", pending).strip()


def _comments(text: str):
    for number, raw in enumerate(text.splitlines(), start=1):
        match = _COMMENT.search(raw)
        if match:
            yield number, match.group(0)


def parse(text: str) -> Parsed:
    requirements, includes, problems, find_links = [], [], [], []
    hashed = False
    for number, line in logical_lines(text):
        hashed = hashed or bool(_HASH_OPTION.search(line))
        secret = credentials.find(line)
        if secret:
            problems.append((number, f"a URL holds a credential ({secret}); {CREDENTIAL_FIX}"))
            continue
        if line.startswith("-"):
            _option(number, line, includes, problems, find_links)
        else:
            requirement = _requirement(number, line)
            if isinstance(requirement, str):
                problems.append((number, requirement))
            elif requirement is not None:
                requirements.append(requirement)
    for number, comment in _comments(text):
        secret = credentials.find(comment)
        if secret:  # the file ships verbatim, comments too
            problems.append(
                (
                    number,
                    f"a comment holds a URL with a credential ({secret}); the file is copied into the bundle "
                    "as it is: remove it from the comment",
                )
            )
    return Parsed(tuple(requirements), tuple(includes), tuple(sorted(problems)), tuple(find_links), hashed)


def _option(number: int, line: str, includes: list, problems: list, find_links: list) -> None:
    try:
        words = shlex.split(line)
    except ValueError:
        words = line.split()
    name, _, value = words[0].partition("=")
    if not value and len(words) > 1:
        value = words[1]
    if name not in _INCLUDE_OPTIONS and name[:2] in ("-r", "-c"):
        name, value = name[:2], name[2:]  # "-rbase.txt"
    if name in _INCLUDE_OPTIONS:
        if not _URL.match(value):
            includes.append((number, value))
    elif name in _EDITABLE:
        if not _is_remote(value):
            problems.append((number, f"-e {value} installs a folder on this machine; {LOCAL_FIX}"))
    elif name in ("-f", "--find-links") and not _is_remote(value):
        find_links.append((number, f"{name} {value}"))


def _requirement(number: int, line: str) -> Requirement | str | None:
    spec = line.split(" --", 1)[0].strip()  # per-requirement options such as --hash
    placeholder = re.search(r"\{\{[^}]*\}\}", spec)
    if placeholder:  # Azure ML's asset repositories fill these in before building; pip cannot
        return f"{spec} holds a template placeholder, {placeholder.group(0)}, not a version: write the version"
    if _is_local(spec):
        return f"{spec} is a path on this machine; {LOCAL_FIX}"
    if _URL.match(spec):
        return Requirement(spec, None, number, direct=True)
    match = _NAME.fullmatch(spec)
    if not match:
        return None  # not something we can read; pip will say what it thinks
    name, rest = match.groups()
    rest, _, marker = rest.partition(";")
    rest, has_marker = rest.strip(), bool(marker.strip())
    if rest.startswith("@"):
        target = rest[1:].strip()
        if _is_local(target):
            return f"{name} @ {target} is a path on this machine; {LOCAL_FIX}"
        return Requirement(name, None, number, has_marker=has_marker, direct=True)
    exact = _EXACT.fullmatch(rest) if rest.startswith("=") else None
    return Requirement(name, exact.group(1) if exact else None, number, has_marker=has_marker)


def _is_remote(value: str) -> bool:
    return bool(_URL.match(value)) and not value.lower().startswith("file:")


def _is_local(value: str) -> bool:
    """A path rather than a name or a URL: names never hold a slash or end in an archive suffix."""
    first = value.split()[0] if value.split() else value
    lowered = first.lower()
    if lowered.startswith("file:") or first.startswith((".", "/", "~")):
        return True
    return (
        not _URL.match(first)
        and "@" not in first
        and ("/" in first or "\\" in first or lowered.endswith((".whl", ".tar.gz", ".zip")))
    )


def collect(top: Path, vendored: bool = False, strict: bool = True) -> RequirementFiles:
    """The top file and every file it includes (recursively), checked; raises RequirementsError.

    Included files keep the path their include line gives, relative to the top file's folder
    (as written, not through symlinks), so the same line finds them in the image.
    A local `-f FOLDER` is fine when vendoring: pip downloads what it finds there into the
    bundle, and the image's offline install passes over the folder it cannot see.
    Not strict (reading a saved bundle): problems are pip's to report; only reading fails.
    """
    files: list[tuple[str, Path]] = []
    requirements: list[Requirement] = []
    hashed = False
    pending = [(top.name, top)]
    while pending:
        rel, path = pending.pop(0)
        if rel in (seen for seen, _ in files):
            continue  # included twice, or a cycle
        parsed = parse(_read(path, strict))
        if strict:
            refuse_what_the_build_cannot_use(parsed, vendored, lambda number, path=path: f"{path}:{number}: ")
        files.append((rel, path))
        requirements.extend(parsed.requirements)
        hashed = hashed or parsed.hashed
        for number, include in parsed.includes:
            included = posixpath.normpath(posixpath.join(posixpath.dirname(rel), include))
            problem = include_problem(include, included, path.parent / include, top)
            if problem is None:
                pending.append((included, path.parent / include))
            elif strict:
                raise RequirementsError(f"{path}:{number}: {problem}")
    return RequirementFiles(tuple(files), tuple(requirements), hashed)


def refuse_what_the_build_cannot_use(parsed: Parsed, vendored: bool, where) -> None:
    """Raise RequirementsError for the first line the image build could not use; `where(line)`
    says where a line is ("FILE:LINE: ", or a conda file's line and "pip: ")."""
    if parsed.problems:
        number, problem = parsed.problems[0]
        raise RequirementsError(f"{where(number)}{problem}")
    if parsed.local_find_links and not vendored:
        number, option = parsed.local_find_links[0]
        raise RequirementsError(
            f"{where(number)}{option} is a folder on this machine, which the image build cannot see; "
            "save with --vendor (the bundle then carries the wheels found there) or publish them to an index"
        )
    direct = next((r for r in parsed.requirements if r.direct), None)
    if vendored and direct is not None:
        raise RequirementsError(
            f"{where(direct.line)}{direct.name} is fetched from its URL when the image is built, even from a "
            "vendored bundle; require it by name and version (name==1.2.3) so its wheel ships, "
            "or save without --vendor"
        )


def include_problem(include: str, included: str, file: Path, top: Path) -> str | None:
    """Why an included file (`-r include`, at `included` relative to the top file) cannot ship, if so."""
    if included.startswith(("../", "/")) or included == "..":
        return (
            f"includes {include}, outside the folder of {top.name}; the bundle carries only "
            "requirement files in that folder or below: move it there"
        )
    if not file.is_file():
        return f"includes {include}, which is not a file; fix the path"
    if not file.resolve().is_relative_to(top.parent.resolve()):
        # A link to ~/.netrc or ~/.pip/pip.conf would ship that file, passwords and all.
        return (
            f"includes {include}, a link to {file.resolve()}, outside the folder of "
            f"{top.name}; the bundle carries only files of that folder: copy the file in instead of linking it"
        )
    return None


def _read(path: Path, strict: bool) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM is not part of the first line, as pip has it
    except (OSError, UnicodeDecodeError) as exc:
        raise RequirementsError(f"{path}: cannot read the requirements file ({exc})") from exc
    conda_key = _CONDA_KEY.search(text)
    if strict and conda_key:
        raise RequirementsError(
            f"{path}:{text.count(chr(10), 0, conda_key.start()) + 1}: this is a conda environment file "
            "(name:, channels:, dependencies:), not pip requirements; conda environments are not supported "
            "yet: list its pip packages in a requirements file"
        )
    return text
