"""bundler's Python API: what every command does, as functions that return values.

    from bundler import api

    model = api.register("model.pkl", "diabetes").version          # diabetes:1
    saved = api.save("imagefiles", api.Inputs(models=("diabetes:1",), entry_script="score.py",
                                              requirements="requirements.txt"))
    assert api.verify("imagefiles").ok
    built = api.build("imagefiles", push=True)                      # needs docker or podman
    print(built.pushed.pinned)                                      # host/diabetes@sha256:...

The CLI is a thin shell over these functions, and `bundler.azureml` (the Azure ML SDK v1
names) a second one. Failures raise the `BundlerError` classes re-exported here, whose
message is the one line the CLI prints. Every result has `to_json()`: the document that
`--json` prints. Paths are relative to `cwd` (default: the current directory); `home` is the
model registry (default: $BUNDLER_HOME, else ~/.bundler). Names in `__all__` are stable.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bundler import layout
from bundler.config import Flags as Inputs
from bundler.errors import (
    BundlerError,
    ConfigError,
    EntryScriptError,
    InputError,
    ModelNotFound,
    OutputError,
    RegistryError,
    SourceError,
)
from bundler.registry import ModelRef, ModelVersion, Registration, Registry, default_home, parse_ref

if TYPE_CHECKING:
    from bundler.save import SaveResult
    from bundler.verify import Report

__all__ = [
    "BundlerError",
    "Built",
    "ConfigError",
    "EntryScriptError",
    "InputError",
    "Inputs",
    "ModelNotFound",
    "ModelSummary",
    "ModelVersion",
    "OutputError",
    "Pushed",
    "Registration",
    "RegistryError",
    "Report",
    "SaveResult",
    "SourceError",
    "build",
    "container_registry",
    "deploy_manifest",
    "login",
    "model",
    "models",
    "pack",
    "push",
    "register",
    "save",
    "verify",
]

DEFAULT_BUNDLE = "imagefiles"


def __getattr__(name: str):
    """The result types of save and verify, imported when asked for: they bring the whole core."""
    if name == "SaveResult":
        from bundler.save import SaveResult

        return SaveResult
    if name == "Report":
        from bundler.verify import Report

        return Report
    raise AttributeError(f"module 'bundler.api' has no attribute {name!r}")


@dataclass(frozen=True)
class ModelSummary:
    name: str
    versions: tuple[int, ...]

    @property
    def latest(self) -> int:
        return self.versions[-1]

    def to_json(self) -> dict:
        return {"name": self.name, "latest": self.latest, "versions": list(self.versions)}


@dataclass(frozen=True)
class Pushed:
    reference: str  # as pushed: host/name:tag
    digest: str  # sha256:...

    @property
    def pinned(self) -> str:
        """The reference that always names exactly this image: host/name@sha256:..."""
        from bundler.engine import repository

        return f"{repository(self.reference)}@{self.digest}"

    def to_json(self) -> dict:
        return {"reference": self.reference, "digest": self.digest, "pinned": self.pinned}


@dataclass(frozen=True)
class Built:
    image: str
    engine: str
    pushed: Pushed | None = None

    def to_json(self) -> dict:
        return {"image": self.image, "engine": self.engine, "pushed": self.pushed.to_json() if self.pushed else None}


def registry(home: Path | str | None = None) -> Registry:
    return Registry(Path(home) if home is not None else default_home())


def register(
    path: Path | str,
    name: str,
    *,
    description: str = "",
    tags: dict[str, str] | None = None,
    properties: dict[str, str] | None = None,
    home: Path | str | None = None,
) -> Registration:
    """Register a model file or folder as the next version of NAME."""
    if not isinstance(path, (str, Path)):
        raise InputError(f"register: the model's path must be a path or text, not {type(path).__name__}")
    return registry(home).register(Path(path), name, description, tags, properties)


def models(home: Path | str | None = None) -> tuple[ModelSummary, ...]:
    """Every registered model with its versions, by name."""
    found = registry(home)
    return tuple(ModelSummary(name, tuple(found.versions(name))) for name in found.names())


def model(ref: str | ModelRef, home: Path | str | None = None) -> ModelVersion:
    """NAME (the latest version) or NAME:VERSION, with its files and metadata."""
    if not isinstance(ref, (str, ModelRef)):
        raise InputError(f"a model reference is text, NAME or NAME:VERSION, not {type(ref).__name__}")
    return registry(home).resolve(parse_ref(ref) if isinstance(ref, str) else ref)


def save(
    outdir: Path | str = DEFAULT_BUNDLE,
    inputs: Inputs | None = None,
    *,
    home: Path | str | None = None,
    cwd: Path | str | None = None,
    force: bool = False,
) -> SaveResult:
    """Write the bundle for INPUTS (default: ./bundler.toml) to OUTDIR."""
    from bundler.save import save as save_bundle

    cwd = Path(cwd) if cwd is not None else Path.cwd()
    if inputs is not None and not isinstance(inputs, Inputs):
        raise InputError(f"save: inputs must be bundler.api.Inputs(...), not {type(inputs).__name__}")
    if not isinstance(outdir, (str, Path)):
        raise InputError(f"save: the output folder must be a path, not {type(outdir).__name__}")
    return save_bundle(inputs or Inputs(), registry(home).home, cwd, Path(outdir), force=force)


def verify(
    bundle: Path | str = DEFAULT_BUNDLE,
    *,
    against: Inputs | None = None,
    home: Path | str | None = None,
    cwd: Path | str | None = None,
) -> Report:
    """Every file of BUNDLE against its bundle.json, or, given `against`, against what save
    would write from those inputs now. BUNDLE may be an archive (.tar, .tar.gz): it is read,
    never extracted. Differences are in the report, not raised."""
    from bundler import archive

    where = Path(cwd, bundle) if cwd is not None else Path(bundle)  # as given: messages name it so
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    if archive.is_archive(where) and not where.is_dir():
        if against is not None:
            raise InputError(f"{bundle}: compare an archive with bundle.json only; extract it to compare with inputs")
        return archive.check(where)
    if against is not None:
        from bundler.diff import verify_against_inputs

        return verify_against_inputs(against, registry(home).home, cwd, Path(bundle))
    from bundler import verify as verify_module

    return verify_module.check(Path(cwd, bundle))


def pack(bundle: Path | str = DEFAULT_BUNDLE, archive: Path | str = "imagefiles.tar.gz"):
    """Write BUNDLE as one deterministic archive (.tar or .tar.gz), every file checked
    against bundle.json on the way; `docker build - < ARCHIVE` builds it."""
    from bundler import archive as archive_module

    return archive_module.pack(Path(bundle), Path(archive))


def deploy_manifest(bundle: Path | str = DEFAULT_BUNDLE, image: str | None = None) -> str:
    """BUNDLE's deploy/kubernetes.yaml, with IMAGE (e.g. a pushed digest) in place of the image it names."""
    from bundler import deploy
    from bundler.config import IMAGE_PATTERN

    bundle = Path(bundle)
    layout.require_bundle(bundle)
    path = bundle / layout.BUNDLE.kubernetes
    if not path.exists():
        raise InputError(f"{bundle} has no {layout.BUNDLE.kubernetes} (saved with --no-deploy); save it again without")
    if not path.is_file():
        raise InputError(f"{path} is not a file; save the bundle again")
    if image is not None and not IMAGE_PATTERN.fullmatch(image):
        raise InputError(
            f"--image {image!r} is not an image reference; use e.g. myregistry.azurecr.io/diabetes@sha256:..."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text (edited by hand?); fix it, or save the bundle again") from None
    return deploy.with_image(text, image) if image else text


def build(
    bundle: Path | str = DEFAULT_BUNDLE, tag: str | None = None, *, push: bool = False, output=None, on_line=None
) -> Built:
    """Build BUNDLE's image with docker, else podman (tag: the bundle's default image name);
    with push, push it as `push` would. The engine's output goes to `output` (a file), or
    line by line to `on_line`, else through this process's own."""
    from bundler import engine as engines

    bundle = Path(bundle)
    layout.require_bundle(bundle)
    tag = tag or default_tag(bundle)
    engine = engines.find()
    engine.build(bundle, tag, output, on_line)
    pushed = _push(engine, bundle, tag, None) if push else None
    return Built(tag, engine.name, pushed)


def push(bundle: Path | str = DEFAULT_BUNDLE, tag: str | None = None, *, to: str | None = None) -> Pushed:
    """Push the image built from BUNDLE (tag: its default image name) to `to`, else to the
    reference its registry-login.json names ([registry] in bundler.toml); log in first."""
    from bundler import engine as engines

    bundle = Path(bundle)
    layout.require_bundle(bundle)
    return _push(engines.find(), bundle, tag or default_tag(bundle), to)


def login(bundle: Path | str = DEFAULT_BUNDLE, *, environ=None) -> tuple[str, ...]:
    """Log the engine in to each registry of BUNDLE's registry-login.json that has a login,
    with the password read from the variable it names, now; returns the addresses."""
    from bundler import engine as engines
    from bundler import registry_login

    environ = os.environ if environ is None else environ
    logins = [entry for entry in registry_login.read(Path(bundle)) if entry.username]
    if not logins:
        raise InputError(
            f"{Path(bundle) / layout.REGISTRY_LOGIN} names no registry to log in to; add [registry] "
            "(address, username, password_env) to bundler.toml and save again"
        )
    passwords = [(entry, environ.get(entry.password_env)) for entry in logins]
    unset = [entry.password_env for entry, password in passwords if not password]
    if unset:
        raise InputError(
            f"set {', '.join(unset)} to the registry's password (bundler reads it from there), then log in again"
        )
    engine = engines.find()
    for entry, password in passwords:
        engine.login(entry.address, entry.username, password)
    return tuple(entry.address for entry in logins)


def container_registry(config: Path | str | None = None, *, cwd: Path | str | None = None):
    """The [registry] of the config file (default ./bundler.toml): address, username and the
    NAME of the variable holding the password (never the password); None without one."""
    from bundler.config import registry_login

    return registry_login(Path(config) if config is not None else None, Path(cwd) if cwd is not None else Path.cwd())


def default_tag(bundle: Path) -> str:
    manifest = layout.read_manifest(bundle)
    return layout.default_tag(tuple(m.name for m in manifest.models), manifest.entry_script)


def _push(engine, bundle: Path, tag: str, to: str | None) -> Pushed:
    from bundler import registry_login

    if to is None:
        targets = [entry.push for entry in registry_login.read(bundle) if entry.push]
        if not targets:
            raise InputError(
                f"{bundle / layout.REGISTRY_LOGIN} names no registry to push to; add [registry] (address, "
                "username, password_env) to bundler.toml and save again, or push --to HOST/NAME:TAG"
            )
        to = targets[0]
    if not engine.has_image(tag):
        raise InputError(f"no image {tag} here to push; build it first: bundler build {bundle}")
    print(f"pushing {tag} as {to}", file=sys.stderr, flush=True)
    return Pushed(to, engine.push(tag, to))
