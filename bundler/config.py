"""The inference configuration: bundler.toml plus the CLI flags that override it.

Three steps, each with one kind of error: read the file (syntax, schema: unknown keys,
wrong types, secrets), read each table into values that remember where they came from
(`Setting`: a flag, or FILE:LINE and key), then check the file system and the rules that
span tables. Every error names the flag or file, line and key, and says how to fix it.
Paths in the file are relative to the file's folder, paths in flags to the current folder.

This module reads only the config file and checks that the files it names exist: it never
looks at models, the registry or the environment variables of the process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bundler.config_file import Document, Setting
from bundler.deploy import DeploySettings
from bundler.deploy import settings as settings_of_deploy
from bundler.errors import ConfigError, InputError
from bundler.layout import ENV_NAME, NEWER_PYTHON, ServerSettings, python_too_old
from bundler.registry import ModelRef, parse_ref

ENGINES = ("auto", "bundler", "azureml")
CONDA_BUILDERS = ("auto", "pip", "conda")
PLATFORMS = ("linux/amd64", "linux/arm64")
DOCKER_HUB = "docker.io"

# An image reference: [registry[:port]/]path[:tag][@digest]. Strict on purpose: the value
# lands in the Dockerfile, so nothing that could break out of an ARG line gets through.
IMAGE_PATTERN = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
HOST_PATTERN = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?")
SAFE_TEXT_PATTERN = re.compile(r"[^\x00-\x1f\x7f]*")

# A PEM certificate block: all of a CA file that ever ships (comments and the rest stay home).
PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+?-----END CERTIFICATE-----")

SERVER_LIMITS = {
    "port": (1, 65535),
    "workers": (1, 64),
    "scoring_timeout": (1, 86400),
    "max_request_bytes": (1, 1 << 40),
}


@dataclass(frozen=True)
class RegistryLogin:
    address: str
    username: str
    password_env: str


@dataclass(frozen=True)
class PackageIndex:
    """Where pip finds packages, and the CA certificates it trusts for them, in stage 1 of the
    build; never a credential: those reach the build only as a secret (a netrc)."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    ca_certificates: tuple[Path, ...] = ()
    trust_ca_at_runtime: bool = False


@dataclass(frozen=True)
class Config:
    models: tuple[ModelRef, ...]
    entry_script: Path
    source_directory: Path | None = None
    requirements: Path | None = None
    conda_file: Path | None = None
    conda_builder: str = "auto"  # which builder installs a conda file: "pip" (a venv), "conda", or chosen
    python: str = "3.11"
    python_given: bool = False  # [environment] python was written (a conda file's python must agree)
    base_image: str | None = "python:3.11-slim"  # None: the builder's default (a conda file decides it)
    server: ServerSettings = field(default_factory=ServerSettings)
    engine: str = "auto"  # as asked for; the plan decides which one runs
    registry: RegistryLogin | None = None
    dockerfile_template: Path | None = None
    vendor: bool = False  # download wheels into the bundle for an offline build
    with_base_image: bool = False  # export the base image(s) into the bundle, for `docker load`
    platform: str = "linux/amd64"
    allowed_secrets: tuple[Path, ...] = ()  # files (or folders) that only look like secrets: they ship
    package_index: PackageIndex | None = None  # a private index, its CA certificates
    deploy: DeploySettings = field(default_factory=DeploySettings)  # deploy/ files; enabled=False: none


@dataclass(frozen=True)
class Flags:
    """What the CLI was given; None means "not given, use the file or the default"."""

    config: Path | None = None
    models: tuple[str, ...] = ()
    entry_script: str | None = None
    source_directory: str | None = None
    requirements: str | None = None
    conda_file: str | None = None
    conda_builder: str | None = None
    base_image: str | None = None
    vendor: bool | None = None
    with_base_image: bool | None = None
    allow_secrets: tuple[str, ...] = ()
    deploy: bool | None = None  # --no-deploy: False

    def __post_init__(self):
        """Python callers (bundler.api.Inputs) get one clear error for a value of the wrong
        type; paths may be Path or str, lists may be lists."""
        for name in ("entry_script", "source_directory", "requirements", "conda_file", "conda_builder", "base_image"):
            value = getattr(self, name)
            if isinstance(value, Path):
                object.__setattr__(self, name, str(value))
            elif value is not None and not isinstance(value, str):
                raise InputError(f"Inputs({name}=...): a path or text, not {type(value).__name__}")
        if self.config is not None and not isinstance(self.config, (str, Path)):
            raise InputError(f"Inputs(config=...): a path, not {type(self.config).__name__}")
        for name in ("models", "allow_secrets"):
            value = getattr(self, name)
            if isinstance(value, (str, Path)) or not all(isinstance(item, (str, Path)) for item in value):
                raise InputError(f"Inputs({name}=...): a list of text, e.g. {name}=[{_EXAMPLES[name]!r}]")
            object.__setattr__(self, name, tuple(str(item) for item in value))
        for name in ("vendor", "with_base_image", "deploy"):
            if getattr(self, name) not in (None, True, False):
                raise InputError(f"Inputs({name}=...): True, False or None, not {getattr(self, name)!r}")


_EXAMPLES = {"models": "diabetes:1", "allow_secrets": "certs/ca.pem"}


def registry_login(config: Path | None, cwd: Path) -> RegistryLogin | None:
    """[registry] of the config file (given, or ./bundler.toml), checked; None without one."""
    return _registry(Document.read(config, cwd))


def load(flags: Flags, cwd: Path) -> Config:
    """Read the config file (given, or ./bundler.toml if present) and apply the flags."""
    document = Document.read(flags.config, cwd)
    entry, source_dir = _inference(flags, document, cwd)
    environment = _environment(flags, document, cwd)
    server, engine = _server(document)
    registry = _registry(document)
    package_index = _package_index(document)
    deploy = settings_of_deploy(document.table("deploy"), lambda key: document.where("deploy", key))
    if flags.deploy is not None:
        deploy = replace(deploy, enabled=flags.deploy)
    template = document.setting("dockerfile", "template")
    _check_files(entry, source_dir, environment.requirements, environment.conda_file, template)
    _check_rules(environment)
    return Config(
        models=_models(flags, document),
        entry_script=entry.path,
        source_directory=source_dir.path if source_dir else None,
        requirements=environment.requirements.path if environment.requirements else None,
        conda_file=environment.conda_file.path if environment.conda_file else None,
        conda_builder=environment.conda_builder.value,
        python=environment.python.value,
        python_given=environment.python_given,
        base_image=environment.base_image.value if environment.base_image else None,
        server=server,
        engine=engine,
        registry=registry,
        dockerfile_template=template.path if template else None,
        vendor=environment.vendor,
        with_base_image=environment.with_base_image,
        platform=environment.platform,
        allowed_secrets=_allowed_secrets(flags, document, cwd),
        package_index=package_index,
        deploy=deploy,
    )


# -- the file ------------------------------------------------------------------------------


def _chosen(flag: Any, flag_name: str, cwd: Path, document: Document, table: str, key: str) -> Setting | None:
    """The flag when given (it overrides the file), else the file's value, else None."""
    if flag is not None:
        return Setting(flag, flag_name, cwd)
    return document.setting(table, key)


# -- the tables ----------------------------------------------------------------------------


def _models(flags: Flags, document: Document) -> tuple[ModelRef, ...]:
    if flags.models:
        refs, where = list(flags.models), "--model"
    else:
        refs, where = document.table("").get("models", []), document.where("", "models")
    parsed = []  # none is fine: as on Azure, AZUREML_MODEL_DIR is then an empty folder
    for ref in refs:
        if not isinstance(ref, str):
            raise ConfigError(f'{where}: each model must be a string like "diabetes:1", not {ref!r}')
        try:
            parsed.append(parse_ref(ref))
        except InputError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    names = [ref.name for ref in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{where}: model {duplicates[0]!r} is listed twice; list each model once")
    return tuple(parsed)


def _inference(flags: Flags, document: Document, cwd: Path) -> tuple[Setting, Setting | None]:
    """The entry script and the source directory; as on Azure, the entry script is relative
    to the source directory when there is one."""
    source_dir = _chosen(flags.source_directory, "--source-dir", cwd, document, "inference", "source_directory")
    entry = _chosen(flags.entry_script, "--entry-script", cwd, document, "inference", "entry_script")
    if entry is None:
        raise ConfigError(
            "no entry script: pass --entry-script score.py or set [inference] entry_script in bundler.toml"
        )
    if source_dir is not None:
        entry = Setting(entry.value, entry.where, source_dir.path)
    return entry, source_dir


@dataclass(frozen=True)
class _EnvironmentTable:
    requirements: Setting | None
    conda_file: Setting | None
    conda_builder: Setting
    python: Setting
    python_given: bool
    base_image: Setting | None  # None: the conda builders choose their own default
    vendor: bool
    platform: str
    with_base_image: bool


def _environment(flags: Flags, document: Document, cwd: Path) -> _EnvironmentTable:
    requirements = _chosen(flags.requirements, "--requirements", cwd, document, "environment", "requirements")
    conda_file = _chosen(flags.conda_file, "--conda-file", cwd, document, "environment", "conda_file")
    if requirements is not None and conda_file is not None:
        raise ConfigError(
            f"{conda_file.where}: give a requirements file or a conda file, not both "
            "(a conda file's pip: list takes requirements, -r files included)"
        )
    conda_builder = _chosen(flags.conda_builder, "--conda-builder", cwd, document, "environment", "conda_builder")
    conda_builder = conda_builder or Setting("auto", "[environment] conda_builder", cwd)
    if conda_builder.value not in CONDA_BUILDERS:
        raise ConfigError(f"{conda_builder.where}: conda_builder must be one of {', '.join(CONDA_BUILDERS)}")
    given = document.setting("environment", "python")
    python = given or Setting("3.11", "[environment] python", cwd)
    if not re.fullmatch(r"3\.[0-9]{1,2}", python.value):
        raise ConfigError(f'{python.where}: python must look like "3.11", not {python.value!r}')
    if python_too_old(python.value):
        raise ConfigError(f'{python.where}: python {python.value} is too old: {NEWER_PYTHON}; set python = "3.11"')
    base_image = _chosen(flags.base_image, "--base-image", cwd, document, "environment", "base_image")
    if base_image is None and conda_file is None:
        base_image = Setting(f"python:{python.value}-slim", document.where("environment", "base_image"), cwd)
    if base_image is not None and not IMAGE_PATTERN.fullmatch(base_image.value):
        shown = re.sub(r"^[^/@:]+:[^/@]+@", "****@", base_image.value)  # never repeat a password
        raise ConfigError(
            f"{base_image.where}: {shown!r} is not an image reference; use e.g. python:3.11-slim "
            "or myregistry.azurecr.io/python:3.11-slim"
        )
    vendor = _chosen(flags.vendor, "--vendor", cwd, document, "environment", "vendor")
    with_base = _chosen(flags.with_base_image, "--with-base-image", cwd, document, "environment", "with_base_image")
    platform = document.setting("environment", "platform")
    if platform is not None and platform.value not in PLATFORMS:
        raise ConfigError(f"{platform.where}: platform must be one of {', '.join(PLATFORMS)}")
    return _EnvironmentTable(
        requirements,
        conda_file,
        conda_builder,
        python,
        given is not None,
        base_image,
        bool(vendor and vendor.value),
        platform.value if platform else PLATFORMS[0],
        bool(with_base and with_base.value),
    )


def _package_index(document: Document) -> PackageIndex | None:
    """[environment] index_url, extra_index_urls, ca_certificates, trust_ca_at_runtime."""
    from bundler import credentials

    values = document.table("environment")
    urls = [("index_url", values["index_url"])] if "index_url" in values else []
    extra = values.get("extra_index_urls", [])
    urls += [("extra_index_urls", url) for url in extra]
    for key, url in urls:
        where = document.where("environment", key)
        if not isinstance(url, str):
            raise ConfigError(f"{where}: {url!r} is not an http(s) URL of a package index")
        parts = url.split("/")
        path_tokens = [part for part in parts[3:] if credentials.looks_like_a_token(part)]
        if credentials.find(url) or "@" in (parts[2] if len(parts) > 2 else url) or path_tokens:
            raise ConfigError(
                f"{where}: the URL holds a credential, which would reach the bundle; give the index without it, and "
                "the credential at build time as a secret: docker build --secret id=netrc,src=$HOME/.netrc"
            )
        # The characters a Dockerfile word takes: a URL enters stage 1's RUN line as it is.
        if not isinstance(url, str) or not re.fullmatch(r"https?://[A-Za-z0-9._:/@+=,-]+", url):
            raise ConfigError(
                f"{where}: {url!r} is not an http(s) URL of a package index that bundler can put in the "
                "Dockerfile (letters, digits and . _ : / @ + = , - only; no query, spaces or brackets)"
            )
    certificates = []
    setting = document.setting("environment", "ca_certificates")
    for value in setting.value if setting else ():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{setting.where}: each entry must be a path (a string), not {value!r}")
        path = Path(setting.base, value)
        text = path.read_text(encoding="ascii", errors="replace") if path.is_file() else None
        if text is None:
            raise ConfigError(f"{setting.where}: CA certificate {path} not found")
        if not PEM_CERTIFICATE.search(text.encode()) or "PRIVATE KEY" in text:
            raise ConfigError(
                f"{setting.where}: {path} is not a PEM CA certificate (-----BEGIN CERTIFICATE-----, and no private key)"
            )
        certificates.append(path)
    runtime = bool(values.get("trust_ca_at_runtime", False))
    if runtime and not certificates:
        raise ConfigError(f"{document.where('environment', 'trust_ca_at_runtime')}: give ca_certificates to trust")

    if not urls and not certificates:
        return None
    index_url = values.get("index_url")
    return PackageIndex(index_url, tuple(extra), tuple(certificates), runtime)


def _allowed_secrets(flags: Flags, document: Document, cwd: Path) -> tuple[Path, ...]:
    """Files the user says only look like secrets: --allow-secret (repeatable) and [secrets] allow."""
    allowed = [Path(cwd, path) for path in flags.allow_secrets]
    setting = document.setting("secrets", "allow")
    for value in setting.value if setting else ():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{setting.where}: each entry must be a path (a string), not {value!r}")
        allowed.append(Path(setting.base, value))
    return tuple(allowed)


def _server(document: Document) -> tuple[ServerSettings, str]:
    values = document.table("server")
    for key, (low, high) in SERVER_LIMITS.items():
        if key in values and not low <= values[key] <= high:
            raise ConfigError(f"{document.where('server', key)}: {key} must be between {low} and {high}")
    engine = values.get("engine", "auto")
    if engine not in ENGINES:
        raise ConfigError(f"{document.where('server', 'engine')}: engine must be one of {', '.join(ENGINES)}")
    return ServerSettings(**{k: v for k, v in values.items() if k in SERVER_LIMITS}), engine


def _registry(document: Document) -> RegistryLogin | None:
    values = document.table("registry")
    if not values:
        return None
    missing = [k for k in ("address", "username", "password_env") if k not in values]
    if missing:
        raise ConfigError(
            f"{document.path}: [registry] needs {', '.join(missing)} (the password comes from password_env)"
        )
    if not HOST_PATTERN.fullmatch(values["address"]):
        raise ConfigError(f"{document.where('registry', 'address')}: {values['address']!r} is not a registry host name")
    if not ENV_NAME.fullmatch(values["password_env"]):
        raise ConfigError(
            f"{document.where('registry', 'password_env')}: password_env must be the NAME of an "
            "environment variable (letters, digits, _), not the password"
        )
    if not SAFE_TEXT_PATTERN.fullmatch(values["username"]) or not values["username"]:
        raise ConfigError(f"{document.where('registry', 'username')}: username must be non-empty, one line")
    return RegistryLogin(values["address"], values["username"], values["password_env"])


# -- checks after reading ------------------------------------------------------------------


def _check_files(
    entry: Setting,
    source_dir: Setting | None,
    requirements: Setting | None,
    conda_file: Setting | None,
    template: Setting | None,
) -> None:
    """Every file the config names exists and is the kind of file it must be."""
    if source_dir is not None and not source_dir.path.is_dir():
        raise ConfigError(f"{source_dir.where}: source directory {source_dir.path} not found or not a directory")
    script = entry.path
    if not script.exists():
        raise ConfigError(f"{entry.where}: entry script {script} not found")
    if not script.is_file():
        raise ConfigError(f"{entry.where}: entry script {script} is not a file")
    if script.suffix != ".py":
        raise ConfigError(f"{entry.where}: entry script {script} must be a .py file (the server imports it as Python)")
    try:
        script.name.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{entry.where}: the entry script's name is not UTF-8; rename it") from None
    if source_dir is not None and not script.resolve().is_relative_to(source_dir.path.resolve()):
        raise ConfigError(f"{entry.where}: entry script {script} must be inside the source directory {source_dir.path}")
    if requirements is not None and not requirements.path.is_file():
        raise ConfigError(f"{requirements.where}: requirements file {requirements.path} not found")
    if conda_file is not None and not conda_file.path.is_file():
        raise ConfigError(f"{conda_file.where}: conda file {conda_file.path} not found")
    if template is not None and not template.path.is_file():
        raise ConfigError(f"{template.where}: Dockerfile template {template.path} not found")


def _check_rules(environment: _EnvironmentTable) -> None:
    """Rules that span tables."""
    base_image, python = environment.base_image, environment.python
    image = base_image.value if base_image else None  # None: a conda builder's default, from Docker Hub
    image_python = re.search(r"(?:^|/)python:(3\.[0-9]{1,2})(?:[-.@]|$)", image or "")
    if environment.vendor and image_python and image_python.group(1) != python.value and not environment.conda_file:
        # Vendored wheels are built for one Python; the official images say theirs in the tag.
        raise ConfigError(
            f"{base_image.where}: {image} runs Python {image_python.group(1)}, but the wheels would be "
            f'vendored for Python {python.value}; set [environment] python = "{image_python.group(1)}" so they match'
        )
    if image_python and python_too_old(image_python.group(1)):
        raise ConfigError(
            f"{base_image.where}: {image} runs Python {image_python.group(1)}, too old: {NEWER_PYTHON}; "
            "use e.g. python:3.11-slim"
        )


def registry_of(image: str) -> str:
    """The registry host an image reference pulls from (Docker Hub when none is named)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return DOCKER_HUB
