"""The plan: everything a bundle will hold, as plain frozen data. PURE.

`make(inputs)` takes what the shell gathered (the validated config, the resolved models
with their stored files, the entry script's facts, the selected sources, the requirement
files, the runtime's files) and returns a Plan in one pass: the facts the templates render
(ImageSpec, with the environment build as data), the inputs half of bundle.json, and every
file to copy. It never reads a file, the clock, the environment or the network, so the
same inputs give the same plan on any machine; tests build Inputs in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from bundler import __version__, imports, layout
from bundler.config import DOCKER_HUB, Config, registry_of
from bundler.deploy import DeploySpec
from bundler.entries import Copied, FileEntry, Generated, RegistryBlob
from bundler.entry_script import EntryScriptInfo
from bundler.environment import CA_BUNDLE, EnvironmentBuild, server_requirements
from bundler.environment_plan import EnvironmentPlan, plan_environment
from bundler.errors import ConfigError, EntryScriptError, SourceError
from bundler.layout import ModelRecord
from bundler.registry import ModelVersion
from bundler.requirements import RequirementFiles
from bundler.sources import SourceSelection

if TYPE_CHECKING:  # conda's module loads only when a conda file is given
    from bundler.conda import CondaFiles

# -- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredModel:
    version: ModelVersion
    blobs: tuple[Path, ...]  # where each of version.files is stored, in the same order


@dataclass(frozen=True)
class RuntimeFiles:
    files: tuple[tuple[str, Path], ...]  # (path under runtime/, file): the scoring server's package
    requirements: bytes  # runtime/requirements.txt of bundler's own server


@dataclass(frozen=True)
class Inputs:
    """Everything a plan is made from, gathered by the shell (save.gather)."""

    config: Config
    models: tuple[StoredModel, ...]
    entry: EntryScriptInfo
    sources: SourceSelection | None
    requirements: RequirementFiles | None
    runtime: RuntimeFiles
    user_template: str | None = None  # the text of [dockerfile] template
    conda: CondaFiles | None = None  # a conda file instead of requirements
    ca_bundle: bytes | None = None  # [environment] ca_certificates, their text in one file


# -- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegistrySpec:
    address: str
    images: tuple[str, ...]  # what the Dockerfile pulls from it
    username: str | None
    password_env: str | None
    push: str | None = None  # the image reference `bundler push` gives the built image here

    @property
    def docker_hub(self) -> bool:
        return self.address == DOCKER_HUB

    @property
    def login_command(self) -> str:
        """`docker login`, as a shell reads it: a user name such as `robot$ci` is quoted."""
        import shlex

        return f"docker login {self.address} --username {shlex.quote(self.username or '')} --password-stdin"

    @property
    def described(self) -> str:
        """'The base image `x` comes', or 'The images `a` and `b` come', for the bundle's README."""
        if len(self.images) == 1:
            return f"The base image `{self.images[0]}` comes"
        return f"The images {' and '.join(f'`{image}`' for image in self.images)} come"


@dataclass(frozen=True)
class ImageSpec:
    """What the templates see (as `image`): facts only, computed here, never in Jinja."""

    generator_version: str
    subject: str  # what the image serves, for people: "diabetes:1", or "score.py (no model)"
    base_image: str
    engine: str  # "bundler" or "azureml"
    engine_reason: str
    models: tuple[ModelRecord, ...]
    entry_script: str  # relative to the app root
    port: int
    environment: EnvironmentBuild
    env: tuple[tuple[str, str], ...]  # ENV of the final image, in order
    labels: tuple[tuple[str, str], ...]
    command: tuple[str, ...]
    healthcheck: tuple[str, ...]
    registries: tuple[RegistrySpec, ...]
    default_tag: str
    base_archives: tuple[tuple[str, str], ...] = ()  # --with-base-image: (image, its file in the bundle)
    ca_bundle: str = CA_BUNDLE  # [environment] ca_certificates, in one file, when given
    deploy: DeploySpec | None = None  # deploy/ files: Kubernetes and Compose (None: --no-deploy)
    bundle: layout.BundleNames = layout.BUNDLE
    app_root: str = layout.APP_ROOT
    models_root: str = layout.MODELS_ROOT
    venv: str = layout.VENV
    runtime_root: str = layout.RUNTIME_ROOT
    runtime_package: str = layout.RUNTIME_PACKAGE
    user: str = layout.USER_NAME
    uid: int = layout.USER_ID

    @property
    def model_refs(self) -> tuple[str, ...]:
        return tuple(m.ref for m in self.models)


@dataclass(frozen=True)
class Plan:
    image: ImageSpec
    files: tuple[FileEntry, ...]  # everything copied or derived before rendering, sorted by path
    manifest: layout.Manifest  # bundle.json without its file list, which emit adds after hashing
    user_template: str | None
    skipped_secrets: tuple[str, ...]
    unpinned: tuple[str, ...] = ()  # requirements a build may resolve differently each time
    skipped_registries: tuple[str, ...] = ()  # model registries in the source directory, left out
    skipped_bundles: tuple[str, ...] = ()  # saved bundles in the source directory, left out
    added_requirements: tuple[str, ...] = ()  # what the server's requirements gained for this script
    unprovided_imports: tuple[tuple[str, int], ...] = ()  # (package, line) no requirement seems to provide


def make(inputs: Inputs) -> Plan:
    config = inputs.config
    engine, reason = choose_engine(config, inputs.entry)
    models = tuple(_model_record(m.version) for m in inputs.models)
    entry_rel = _entry_relative(config)
    environment = plan_environment(config, inputs.requirements, inputs.conda, inputs.ca_bundle)
    user_requirements = environment.requirement_names
    server = server_requirements(
        inputs.runtime.requirements, engine, inputs.entry.uses_inference_schema, user_requirements
    )
    files = _model_files(inputs.models) + _app_files(inputs, entry_rel) + _runtime_files(inputs.runtime, server.text)
    files += environment.files
    _check_unique(files)
    keys = tuple((m.name, m.version) for m in models)
    default_tag = layout.default_tag(tuple(m.name for m in models), entry_rel)
    registries = _registries(config, environment, push_reference(default_tag, models))
    env = layout.image_variables(entry_rel, keys, config.server, engine) + environment.variables
    image = ImageSpec(
        generator_version=__version__,
        subject=", ".join(m.ref for m in models) or f"{entry_rel} (no model)",
        base_image=environment.base_image,
        engine=engine,
        engine_reason=reason,
        models=models,
        entry_script=entry_rel,
        port=config.server.port,
        environment=environment.build,
        # A conda file's variables too: conda sets them when the environment is activated, and
        # nothing activates it in the image.
        env=env,
        labels=_labels(models, default_tag),
        command=layout.server_command(engine),
        healthcheck=layout.HEALTHCHECK,
        registries=registries,
        default_tag=default_tag,
        deploy=_deploy(config, default_tag, models, registries, env) if config.deploy.enabled else None,
        base_archives=tuple((image, layout.base_image_file(image)) for image in _pulled(environment))
        if config.with_base_image
        else (),
    )
    manifest = layout.Manifest(
        generator_version=__version__,
        models=models,
        entry_script=entry_rel,
        requirements_file=environment.requirements_file,
        engine=engine,
        base_image=environment.base_image,
        server=config.server,
        vendor=config.vendor,
        conda_file=environment.conda_file,
        builder=environment.build.kind,
    )
    return Plan(
        image=image,
        files=tuple(sorted(files, key=lambda e: e.path)),
        manifest=manifest,
        user_template=inputs.user_template,
        skipped_secrets=inputs.sources.skipped_secrets if inputs.sources else (),
        unpinned=environment.unpinned,
        skipped_registries=inputs.sources.skipped_registries if inputs.sources else (),
        skipped_bundles=inputs.sources.skipped_bundles if inputs.sources else (),
        added_requirements=server.added,
        unprovided_imports=imports.unprovided(
            inputs.entry.imports, user_requirements + server.names, _own_modules(inputs, entry_rel)
        ),
    )


def choose_engine(config: Config, entry: EntryScriptInfo) -> tuple[str, str]:
    wanted = config.engine
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


def _entry_relative(config: Config) -> str:
    if config.source_directory is None:
        return config.entry_script.name
    rel = config.entry_script.resolve().relative_to(config.source_directory.resolve())
    return PurePosixPath(*rel.parts).as_posix()


def _model_record(model: ModelVersion) -> ModelRecord:
    return ModelRecord(model.name, model.version, tuple((f.path, f.sha256, f.size) for f in model.files))


def _model_files(models: tuple[StoredModel, ...]) -> tuple[FileEntry, ...]:
    return tuple(
        FileEntry(
            f"{layout.model_folder(m.version.name, m.version.version)}/{f.path}",
            layout.FILE_MODE,
            RegistryBlob(blob, f.sha256, f.size),
        )
        for m in models
        for f, blob in zip(m.version.files, m.blobs)
    )


def _app_files(inputs: Inputs, entry_rel: str) -> tuple[FileEntry, ...]:
    """The entry script and the source directory's files, under azureml-app/."""
    sources = inputs.sources
    if sources is None:
        return (FileEntry(f"{layout.APP_DIR}/{entry_rel}", layout.FILE_MODE, Copied(inputs.config.entry_script)),)
    if entry_rel not in {f.path for f in sources.files}:
        raise SourceError(
            f"{inputs.config.entry_script}: the entry script is left out of the source directory by a rule "
            f"(.bundlerignore, or a built-in one such as secrets); remove or negate the rule that matches {entry_rel}"
        )
    return tuple(
        FileEntry(f"{layout.APP_DIR}/{f.path}", layout.EXEC_MODE if f.executable else layout.FILE_MODE, Copied(f.file))
        for f in sources.files
    )


def _runtime_files(runtime: RuntimeFiles, requirements: bytes) -> tuple[FileEntry, ...]:
    package = tuple(
        FileEntry(f"{layout.RUNTIME_DIR}/{rel}", layout.FILE_MODE, Copied(path)) for rel, path in runtime.files
    )
    return package + (FileEntry(layout.RUNTIME_REQUIREMENTS, layout.FILE_MODE, Generated(requirements)),)


def _own_modules(inputs: Inputs, entry_rel: str) -> frozenset[str]:
    """Top-level modules the bundle's app folder holds: importable from the app root, and from
    the entry script's own folder (the server puts both on the path)."""
    paths = [f.path for f in inputs.sources.files] if inputs.sources else [entry_rel]
    script_dir = PurePosixPath(entry_rel).parent
    names = set()
    for path in map(PurePosixPath, paths):
        for base in {PurePosixPath("."), script_dir}:
            if base == PurePosixPath(".") or base in path.parents:
                first = path.relative_to(base).parts[0]
                names.add(first[:-3] if first.endswith(".py") else first)
    return frozenset(names)


def _labels(models: tuple[ModelRecord, ...], default_tag: str) -> tuple[tuple[str, str], ...]:
    refs = ",".join(m.ref for m in models)
    if not models:
        return (
            ("org.opencontainers.image.title", default_tag),
            ("org.opencontainers.image.description", "Scoring service (no model), generated by bundler"),
            ("io.bundler.generator", f"bundler {__version__}"),
        )
    labels = [
        ("org.opencontainers.image.title", models[0].name if len(models) == 1 else "+".join(m.name for m in models)),
        ("org.opencontainers.image.description", f"Scoring service for {refs}, generated by bundler"),
        ("io.bundler.models", refs),
        ("io.bundler.generator", f"bundler {__version__}"),
    ]
    if len(models) == 1:
        labels.insert(1, ("org.opencontainers.image.version", str(models[0].version)))
    return tuple(labels)


def push_reference(default_tag: str, models: tuple[ModelRecord, ...]) -> str:
    """NAME:VERSION of the image as pushed, without the registry: the first model's name and
    version (a service without a model: its entry script's name, version latest)."""
    return f"{default_tag}:{models[0].version if models else 'latest'}"


def _deploy(config: Config, default_tag: str, models, registries, env) -> DeploySpec:
    """The deploy files' facts: the image as pushed to [registry] (else as built here, NAME:VERSION)."""
    from bundler import deploy

    pushed = [r.push for r in registries if r.push]
    reference = pushed[0] if pushed else push_reference(default_tag, models)
    return deploy.spec(
        config.deploy,
        name=default_tag,
        image=reference,
        version=reference.rsplit(":", 1)[1],
        port=config.server.port,
        uid=layout.USER_ID,
        env=env,
        scoring_timeout=config.server.scoring_timeout,
        healthcheck=layout.HEALTHCHECK,
    )


def _pulled(environment: EnvironmentPlan) -> tuple[str, ...]:
    """The images the Dockerfile starts from: the base image, and a builder's own."""
    return (environment.base_image, *((environment.build.builder_image,) if environment.build.builder_image else ()))


def _registries(config: Config, environment: EnvironmentPlan, pushed_as: str) -> tuple[RegistrySpec, ...]:
    """Each registry the Dockerfile pulls from, with its images, and the one of [registry]: the
    image is pushed there, and its login is also the base image's when that comes from there."""
    by_address: dict[str, list[str]] = {}
    for image in _pulled(environment):
        by_address.setdefault(registry_of(image), []).append(image)
    login = config.registry
    if login is not None:
        by_address.setdefault(login.address, [])
    return tuple(
        RegistrySpec(address, tuple(pulled), login.username, login.password_env, f"{address}/{pushed_as}")
        if login and address == login.address
        else RegistrySpec(address, tuple(pulled), None, None)
        for address, pulled in by_address.items()
    )


def _check_unique(files: tuple[FileEntry, ...]) -> None:
    seen: set[str] = set()
    for entry in files:
        if entry.path in seen:
            raise ConfigError(f"two inputs would both be written to {entry.path} in the bundle; rename one")
        seen.add(entry.path)
