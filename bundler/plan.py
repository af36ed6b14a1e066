"""The plan: everything a bundle will hold, as plain frozen data. PURE.

`make()` takes the validated config and inputs that the shell has already gathered
(resolved model versions, the selected source files, the runtime's files) and returns
a Plan: the Dockerfile's facts (an ImageSpec for the templates) and every file to copy.
It never reads a file, the clock, the environment or the network, so the same inputs
give the same plan on any machine; tests can inspect plans without touching disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bundler import __version__
from bundler.config import Config
from bundler.entry_script import EntryScriptInfo
from bundler.errors import ConfigError, EntryScriptError, SourceError
from bundler.registry import ModelVersion
from bundler.requirements import RequirementFiles
from bundler.sources import SourceSelection

APP_ROOT = "/var/azureml-app"
MODELS_ROOT = f"{APP_ROOT}/azureml-models"
VENV = "/opt/venv"
RUNTIME_ROOT = "/opt/bundler"
RUNTIME_PACKAGE = "bundler_runtime"
USER_NAME, USER_ID = "bundler", 10001
FILE_MODE, EXEC_MODE = 0o644, 0o755
DOCKER_HUB = "docker.io"

# The reference server, for entry scripts that need raw HTTP access (engine "azureml").
AZUREML_SERVER_REQUIREMENT = "azureml-inference-server-http==1.5.1"


@dataclass(frozen=True)
class FileEntry:
    """A file of the bundle: copied from `source`, or written from `data`."""

    path: str  # POSIX, relative to the bundle
    mode: int
    source: Path | None = None
    data: bytes | None = None
    sha256: str | None = None  # known digest of `source` (registry blobs), checked while copying


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: int
    folder: str  # in the bundle, e.g. azureml-models/diabetes/1
    files: tuple[tuple[str, str, int], ...]  # (path, sha256, size)


@dataclass(frozen=True)
class RegistrySpec:
    address: str
    image: str
    username: str | None
    password_env: str | None


@dataclass(frozen=True)
class ImageSpec:
    """What the templates see: facts only, computed here, never in Jinja."""

    generator: str
    generator_version: str
    base_image: str
    engine: str  # "bundler" or "azureml"
    engine_reason: str
    models: tuple[ModelSpec, ...]
    entry_script: str  # relative to the app root
    port: int
    environment_file: str  # in the bundle
    env: tuple[tuple[str, str], ...]  # ENV of the final image, in order
    labels: tuple[tuple[str, str], ...]
    command: tuple[str, ...]
    healthcheck: tuple[str, ...]
    registries: tuple[RegistrySpec, ...]
    default_tag: str
    vendored: bool  # wheels ship in environment/wheels/: the build needs no network
    # The user's requirements carry hashes, so pip would demand them of the runtime's too:
    # the runtime's requirements get a pip run of their own, first.
    runtime_installed_apart: bool = False
    app_root: str = APP_ROOT
    models_root: str = MODELS_ROOT
    venv: str = VENV
    runtime_root: str = RUNTIME_ROOT
    runtime_package: str = RUNTIME_PACKAGE
    user: str = USER_NAME
    uid: int = USER_ID

    @property
    def model_refs(self) -> tuple[str, ...]:
        return tuple(f"{m.name}:{m.version}" for m in self.models)


@dataclass(frozen=True)
class Plan:
    spec: ImageSpec
    files: tuple[FileEntry, ...]  # everything copied or generated before rendering, sorted
    server: dict  # the server settings, for bundle.json
    skipped_secrets: tuple[str, ...]
    dockerfile_template: Path | None
    unpinned: tuple[str, ...] = ()  # requirements a build may resolve differently each time


def make(
    config: Config,
    models: tuple[ModelVersion, ...],
    entry: EntryScriptInfo,
    sources: SourceSelection | None,
    runtime_files: tuple[tuple[str, Path], ...],
    runtime_requirements: bytes,
    blob_path,
    wheels: tuple[tuple[str, Path], ...] = (),
    environment: RequirementFiles | None = None,
) -> Plan:
    engine, reason = choose_engine(config, entry)
    model_specs = tuple(_model_spec(m) for m in models)
    entry_rel = _entry_relative(config)

    files: list[FileEntry] = []
    for model in models:
        folder = f"azureml-models/{model.name}/{model.version}"
        for f in model.files:
            files.append(FileEntry(f"{folder}/{f.path}", FILE_MODE, source=blob_path(f.sha256), sha256=f.sha256))
    if sources is not None:
        if entry_rel not in {f.path for f in sources.files}:
            raise SourceError(
                f"{config.entry_script}: the entry script is left out of the source directory by a rule "
                f"(.bundlerignore, or a built-in one such as secrets); remove or negate the rule that matches {entry_rel}"
            )
        for f in sources.files:
            files.append(FileEntry(f"azureml-app/{f.path}", EXEC_MODE if f.executable else FILE_MODE, source=f.file))
    else:
        files.append(FileEntry(f"azureml-app/{entry_rel}", FILE_MODE, source=config.entry_script))
    for rel, path in runtime_files:
        files.append(FileEntry(f"runtime/{rel}", FILE_MODE, source=path))
    files.append(FileEntry("runtime/requirements.txt", FILE_MODE, data=runtime_requirements_for(engine, runtime_requirements)))
    environment_file = "environment/requirements.txt"
    if environment is not None:
        # The user's file becomes environment/requirements.txt, unless it includes a file of
        # that name (prod.txt: -r requirements.txt); then it keeps its own. The files it
        # includes keep their paths relative to it, so its -r / -c lines resolve in the image.
        (top_name, top), *included = environment.files
        if any(rel == "requirements.txt" for rel, _ in included):
            environment_file = f"environment/{top_name}"
        files.append(FileEntry(environment_file, FILE_MODE, source=top))
        files.extend(FileEntry(f"environment/{rel}", FILE_MODE, source=path) for rel, path in included)
    else:
        files.append(FileEntry("environment/requirements.txt", FILE_MODE,
                               data=b"# No requirements were given to bundler save.\n"))
    for name, path in wheels:
        files.append(FileEntry(f"environment/wheels/{name}", FILE_MODE, source=path))
    _check_unique(files)

    server = {
        "port": config.server.port,
        "workers": config.server.workers,
        "scoring_timeout": config.server.scoring_timeout,
        "max_request_bytes": config.server.max_request_bytes,
    }
    spec = ImageSpec(
        generator="bundler",
        generator_version=__version__,
        base_image=config.base_image,
        engine=engine,
        engine_reason=reason,
        models=model_specs,
        entry_script=entry_rel,
        port=config.server.port,
        environment_file=environment_file,
        env=_image_env(engine, model_specs, entry_rel, server),
        labels=_labels(model_specs),
        command=_command(engine),
        healthcheck=("python", "-m", f"{RUNTIME_PACKAGE}.healthcheck"),
        registries=(_registry(config),),
        default_tag=image_name(model_specs[0].name),
        vendored=config.vendor,
        runtime_installed_apart=environment is not None and environment.hashed,
    )
    return Plan(
        spec=spec,
        files=tuple(sorted(files, key=lambda e: e.path)),
        server=server,
        skipped_secrets=sources.skipped_secrets if sources else (),
        dockerfile_template=config.dockerfile_template,
        unpinned=environment.unpinned if environment is not None and not config.vendor else (),
    )


def choose_engine(config: Config, entry: EntryScriptInfo) -> tuple[str, str]:
    wanted = config.server.engine
    if entry.needs_azureml_engine:
        if wanted == "bundler":
            raise EntryScriptError(
                f"{config.entry_script}: imports {entry.azureml_import} (raw HTTP access), which only the "
                'reference Azure ML server provides; set [server] engine = "azureml" (or "auto")'
            )
        return "azureml", f"the entry script imports {entry.azureml_import}, which needs the reference server"
    if wanted == "azureml":
        return "azureml", 'chosen in bundler.toml ([server] engine = "azureml")'
    return "bundler", "the entry script uses only init() and run()"


# One component of an image name, as Docker accepts it: lower-case letters and digits,
# separated by one of ".", "_", "__" or dashes.
_IMAGE_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


def image_name(model_name: str) -> str:
    """A model's name as an image name: lower-cased, and where Docker would refuse it
    ("a..b", "model-"), each run of separators becomes one dash."""
    name = model_name.lower()
    if _IMAGE_NAME.fullmatch(name):
        return name
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "model"


def _entry_relative(config: Config) -> str:
    if config.source_directory is None:
        return config.entry_script.name
    rel = config.entry_script.resolve().relative_to(config.source_directory.resolve())
    return PurePosixPath(*rel.parts).as_posix()


def _model_spec(model: ModelVersion) -> ModelSpec:
    return ModelSpec(
        name=model.name,
        version=model.version,
        folder=f"azureml-models/{model.name}/{model.version}",
        files=tuple((f.path, f.sha256, f.size) for f in model.files),
    )


def runtime_requirements_for(engine: str, bundled: bytes) -> bytes:
    if engine == "azureml":
        return (
            b"# The reference Azure ML inference server, for an entry script that needs raw HTTP access.\n"
            + AZUREML_SERVER_REQUIREMENT.encode()
            + b"\n"
        )
    return bundled


def _image_env(engine, models, entry_rel, server) -> tuple[tuple[str, str], ...]:
    model_dir = f"{APP_ROOT}/{models[0].folder}" if len(models) == 1 else MODELS_ROOT
    env = [
        ("PATH", f"{VENV}/bin:$PATH"),
        ("PYTHONPATH", RUNTIME_ROOT),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("PYTHONUNBUFFERED", "1"),
        ("AML_APP_ROOT", APP_ROOT),
        ("AZUREML_ENTRY_SCRIPT", entry_rel),
        ("AZUREML_MODEL_DIR", model_dir),
        ("BUNDLER_PORT", str(server["port"])),
        ("BUNDLER_WORKERS", str(server["workers"])),
        ("BUNDLER_SCORING_TIMEOUT", str(server["scoring_timeout"])),
    ]
    if engine == "bundler":  # the reference server has no request body limit to set
        env.append(("BUNDLER_MAX_REQUEST_BYTES", str(server["max_request_bytes"])))
    return tuple(env)


def _labels(models: tuple[ModelSpec, ...]) -> tuple[tuple[str, str], ...]:
    refs = ",".join(f"{m.name}:{m.version}" for m in models)
    labels = [
        ("org.opencontainers.image.title", models[0].name if len(models) == 1 else "+".join(m.name for m in models)),
        ("org.opencontainers.image.description", f"Scoring service for {refs}, generated by bundler"),
        ("io.bundler.models", refs),
        ("io.bundler.generator", f"bundler {__version__}"),
    ]
    if len(models) == 1:
        labels.insert(1, ("org.opencontainers.image.version", str(models[0].version)))
    return tuple(labels)


def _command(engine: str) -> tuple[str, ...]:
    if engine == "azureml":  # azmlinfsrv, started with the same BUNDLER_* settings
        return ("python", "-m", f"{RUNTIME_PACKAGE}.reference")
    return ("python", "-m", RUNTIME_PACKAGE)


def registry_of(image: str) -> str:
    """The registry host an image reference pulls from (Docker Hub when none is named)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB


def _registry(config: Config) -> RegistrySpec:
    address = registry_of(config.base_image)
    login = config.registry
    if login is not None and login.address != address:
        raise ConfigError(
            f"[registry] address {login.address!r} is not where the base image {config.base_image!r} "
            f"comes from ({address}); set address = \"{address}\" or change base_image"
        )
    if login is None:
        return RegistrySpec(address, config.base_image, None, None)
    return RegistrySpec(address, config.base_image, login.username, login.password_env)


def _check_unique(files: list[FileEntry]) -> None:
    seen: set[str] = set()
    for entry in files:
        if entry.path in seen:
            raise ConfigError(f"two inputs would both be written to {entry.path} in the bundle; rename one")
        seen.add(entry.path)
