"""Render the generated files of a bundle from the plan. PURE.

Templates live in templates/ (shipped inside the wheel as bundler/templates). They get ONE
object, `image` (the plan's ImageSpec; `plan` is the same object under the name templates
written for bundler 0.1 use), and compute nothing: facts come from plan.py. Every value
that enters the Dockerfile passes one of three filters, `word` (a bare token that must
match a strict pattern), `quoted` (a double-quoted, escaped string) or `exec_form` (a
JSON array), so no input can inject an instruction. Templates render in Jinja2's sandbox
with StrictUndefined, because a user's Dockerfile template is code we run.

Render never reads the environment, the clock or the registry.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from functools import cache
from pathlib import Path

from bundler import layout, registry_login
from bundler.entries import FileEntry, Generated
from bundler.errors import ConfigError
from bundler.plan import ImageSpec, Plan

DOCKERFILE_TEMPLATE = "Dockerfile.jinja"
_WORD = re.compile(r"[A-Za-z0-9._:/@+=,-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def templates_dir() -> Path:
    """Inside the wheel, templates sit in the package; in a source checkout, at the top."""
    packaged = Path(__file__).parent / "templates"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "templates"


class UnsafeValue(ValueError):
    pass


def word(value: object) -> str:
    """A bare Dockerfile token (image names, paths, numbers): refuse anything else."""
    text = str(value)
    if not _WORD.fullmatch(text):
        raise UnsafeValue(f"{text!r} cannot be placed in the Dockerfile as a bare word")
    return text


def quoted(value: object) -> str:
    """A double-quoted Dockerfile string: no variable expansion, no line breaks, no escapes out."""
    text = str(value)
    if _CONTROL.search(text):
        raise UnsafeValue(f"{text!r} holds a line break or control character; it cannot enter the Dockerfile")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def exec_form(words) -> str:
    """JSON array form for CMD / HEALTHCHECK: no shell, so signals reach the server."""
    for item in words:
        if _CONTROL.search(str(item)):
            raise UnsafeValue(f"{item!r} holds a control character; it cannot enter the Dockerfile")
    return json.dumps([str(w) for w in words])


@cache
def _jinja(template_dir: str):
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(template_dir),
        bytecode_cache=_bytecode_cache(),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    from bundler.deploy import yaml_scalar

    env.filters.update(word=word, quoted=quoted, exec_form=exec_form, yaml=yaml_scalar)
    return env


def _bytecode_cache():
    """The built-in templates compiled once per user and bundler version, not at every save
    (compiling them took most of a small save's time). The folder is this user's alone: code
    loaded from it runs, so one that others could write is never used."""
    import os
    import stat

    from jinja2 import FileSystemBytecodeCache

    from bundler import __version__

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "bundler", f"templates-{__version__}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            return None
        return FileSystemBytecodeCache(folder)
    except OSError:
        return None  # no cache (a read-only home): templates compile as before


def render_template(name: str, image: ImageSpec, user_template: str | None = None) -> str:
    from jinja2 import TemplateError

    jinja = _jinja(str(templates_dir()))
    try:
        template = jinja.from_string(user_template) if user_template is not None else jinja.get_template(name)
        return template.render(image=image, plan=image)
    except UnsafeValue as exc:
        raise ConfigError(f"unsafe value for the Dockerfile: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a template's expression can raise anything: say where, once
        where = "your Dockerfile template" if user_template is not None else f"built-in template {name}"
        line = getattr(exc, "lineno", None) if isinstance(exc, TemplateError) else _template_line(exc)
        what = str(exc) if isinstance(exc, TemplateError) else f"{type(exc).__name__}: {exc}"
        raise ConfigError(f"{where}{f' line {line}' if line else ''}: {what}") from None


def _template_line(exc: BaseException) -> int | None:
    """The template line an error came from: jinja2 rewrites tracebacks to point into the template."""
    import traceback

    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename == "<template>" or f.filename.endswith(".jinja")
    ]
    return frames[-1].lineno if frames else None


def generated_files(plan: Plan) -> tuple[FileEntry, ...]:
    """The files rendered from the plan (the manifest is added by emit, after hashing)."""
    image = plan.image

    def rendered(path: str, template: str, user_template: str | None = None) -> FileEntry:
        return FileEntry(path, layout.FILE_MODE, Generated(render_template(template, image, user_template).encode()))

    return (
        rendered(layout.DOCKERIGNORE, "dockerignore.jinja"),
        rendered(layout.DOCKERFILE, DOCKERFILE_TEMPLATE, plan.user_template),
        rendered(layout.README, "README.md.jinja"),
        FileEntry(layout.REGISTRY_LOGIN, layout.FILE_MODE, Generated(registry_login.to_bytes(image.registries))),
    ) + (
        (
            rendered(image.bundle.kubernetes, "kubernetes.yaml.jinja"),
            rendered(image.bundle.compose, "compose.yaml.jinja"),
        )
        if image.deploy
        else ()
    )


def manifest(plan: Plan, files: dict[str, layout.FileRecord]) -> bytes:
    """bundle.json: the plan's inputs and every other file's mode, size and sha256."""
    return replace(plan.manifest, files=files).to_bytes()
