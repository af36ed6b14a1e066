"""The inference configuration: bundler.toml plus the CLI flags that override it.

Everything is validated once, here, into frozen dataclasses; every error names the file,
the key and (where it can be found) the line, and says how to fix it. Paths in the file
are relative to the file's folder, paths in flags to the current directory.

This module reads only the config file itself: it never looks at models, the registry
or the environment variables of the process.
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundler.errors import ConfigError, InputError
from bundler.registry import ModelRef, parse_ref

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

DEFAULT_CONFIG_NAME = "bundler.toml"
ENGINES = ("auto", "bundler", "azureml")
PLATFORMS = ("linux/amd64", "linux/arm64")
SECRET_KEYS = ("password", "passwd", "token", "secret", "api_key", "apikey", "access_key")

# An image reference: [registry[:port]/]path[:tag][@digest]. Strict on purpose: the value
# lands in the Dockerfile, so nothing that could break out of an ARG line gets through.
IMAGE_PATTERN = re.compile(
    r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
HOST_PATTERN = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?")
ENV_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SAFE_TEXT_PATTERN = re.compile(r"[^\x00-\x1f\x7f]*")

# The schema: table -> key -> (type, description). "" is the top level.
SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "": {"models": list},
    "inference": {"entry_script": str, "source_directory": str},
    "environment": {"requirements": str, "conda_file": str, "python": str, "base_image": str,
                    "vendor": bool, "platform": str},
    "server": {"port": int, "workers": int, "scoring_timeout": int, "max_request_bytes": int, "engine": str},
    "registry": {"address": str, "username": str, "password_env": str},
    "dockerfile": {"template": str},
}


@dataclass(frozen=True)
class ServerSettings:
    port: int = 5001
    workers: int = 1
    scoring_timeout: int = 60
    max_request_bytes: int = 100 * 1024 * 1024
    engine: str = "auto"


@dataclass(frozen=True)
class RegistryLogin:
    address: str
    username: str
    password_env: str


@dataclass(frozen=True)
class Config:
    models: tuple[ModelRef, ...]
    entry_script: Path
    source_directory: Path | None = None
    requirements: Path | None = None
    conda_file: Path | None = None
    python: str = "3.11"
    base_image: str = "python:3.11-slim"
    server: ServerSettings = field(default_factory=ServerSettings)
    registry: RegistryLogin | None = None
    dockerfile_template: Path | None = None
    vendor: bool = False  # download wheels into the bundle for an offline build
    platform: str = "linux/amd64"


@dataclass(frozen=True)
class Flags:
    """What the CLI was given; None means "not given, use the file or the default"."""

    config: Path | None = None
    models: tuple[str, ...] = ()
    entry_script: str | None = None
    source_directory: str | None = None
    requirements: str | None = None
    conda_file: str | None = None
    base_image: str | None = None
    vendor: bool | None = None


def load(flags: Flags, cwd: Path) -> Config:
    """Read the config file (given, or ./bundler.toml if present) and apply the flags."""
    path = flags.config if flags.config is not None else cwd / DEFAULT_CONFIG_NAME
    if flags.config is not None and not Path(cwd, path).is_file():
        raise ConfigError(f"config file {path} not found; check the --config path")
    path = Path(cwd, path)
    if path.is_file():
        text = _read_text(path)
        data = _parse(text, path)
        _check_schema(data, text, path)
        base = path.parent
    else:
        data, text, base = {}, "", cwd
    return _build(data, text, path, base, flags, cwd)


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8); bundler.toml must be TOML") from exc


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}; fix the syntax there") from exc


def _check_schema(data: dict[str, Any], text: str, path: Path) -> None:
    for key, value in data.items():
        if isinstance(value, dict) and key in SCHEMA and key != "":
            for sub, subvalue in value.items():
                _check_key(path, text, key, sub, subvalue)
        else:
            _check_key(path, text, "", key, value)


def _check_key(path: Path, text: str, table: str, key: str, value: Any) -> None:
    where = _where(path, text, table, key)
    if key.lower() in SECRET_KEYS or any(s in key.lower() for s in ("password", "token", "secret")):
        if key != "password_env":
            raise ConfigError(
                f"{where}: secrets are never read from files; remove {key!r} and set "
                "[registry] password_env to the NAME of an environment variable that holds it"
            )
    allowed = SCHEMA.get(table, {})
    if table == "" and key in SCHEMA and key != "":
        raise ConfigError(f"{where}: [{key}] must be a table, e.g. [{key}] on its own line")
    if key not in allowed:
        choices = list(allowed) + ([t for t in SCHEMA if t] if table == "" else [])
        hint = difflib.get_close_matches(key, choices, n=1)
        did_you_mean = f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(choices)}"
        raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean}")
    expected = allowed[key]
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key!r} must be {_type_name(expected)}, not {_type_name(type(value))}")


def _type_name(kind: Any) -> str:
    names = {str: "a string", int: "a whole number", list: "a list", bool: "true or false",
             float: "a number", dict: "a table"}
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _where(path: Path, text: str, table: str, key: str) -> str:
    """'FILE:LINE: [table] key' — tomllib gives no positions, so find the line by scanning."""
    qualified = f"[{table}] {key}" if table else key
    line = _line_of(text, table, key)
    return f"{path}:{line}: {qualified}" if line else f"{path}: {qualified}"


def _line_of(text: str, table: str, key: str) -> int | None:
    current = ""
    key_line = re.compile(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        header = re.match(r"\s*\[([^\[\]]+)\]", line)
        if header:
            current = header.group(1).strip()
            if current == key and table == "":
                return number
            continue
        if current == table and key_line.match(line):
            return number
    return None


def _build(data: dict, text: str, path: Path, base: Path, flags: Flags, cwd: Path) -> Config:
    inference = data.get("inference", {})
    environment = data.get("environment", {})
    server_data = data.get("server", {})
    registry_data = data.get("registry", {})

    def file_value(flag: str | None, flag_name: str, table: dict, table_name: str, key: str) -> tuple[Path | None, str]:
        if flag is not None:
            return Path(cwd, flag), flag_name
        if key in table:
            return Path(base, table[key]), _where(path, text, table_name, key)
        return None, ""

    models = _models(flags, data, path, text)

    source_dir, source_where = file_value(flags.source_directory, "--source-dir", inference, "inference",
                                          "source_directory")
    if source_dir is not None and not source_dir.is_dir():
        raise ConfigError(f"{source_where}: source directory {source_dir} not found or not a directory")

    entry_flag = flags.entry_script
    if entry_flag is None and "entry_script" not in inference:
        raise ConfigError("no entry script: pass --entry-script score.py or set [inference] entry_script in bundler.toml")
    # As on Azure, the entry script is relative to the source directory when there is one.
    if entry_flag is not None:
        entry = Path(source_dir or cwd, entry_flag)
        entry_where = "--entry-script"
    else:
        entry = Path(source_dir or base, inference["entry_script"])
        entry_where = _where(path, text, "inference", "entry_script")
    if not entry.exists():
        raise ConfigError(f"{entry_where}: entry script {entry} not found")
    if not entry.is_file():
        raise ConfigError(f"{entry_where}: entry script {entry} is not a file")
    if entry.suffix != ".py":
        raise ConfigError(f"{entry_where}: entry script {entry} must be a .py file (the server imports it as Python)")
    if source_dir is not None and not entry.resolve().is_relative_to(source_dir.resolve()):
        raise ConfigError(f"{entry_where}: entry script {entry} must be inside the source directory {source_dir}")

    requirements, req_where = file_value(flags.requirements, "--requirements", environment, "environment", "requirements")
    conda_file, conda_where = file_value(flags.conda_file, "--conda-file", environment, "environment", "conda_file")
    if requirements is not None and conda_file is not None:
        raise ConfigError(f"{conda_where}: give either requirements or conda_file, not both")
    for value, where, what in ((requirements, req_where, "requirements file"), (conda_file, conda_where, "conda file")):
        if value is not None and not value.is_file():
            raise ConfigError(f"{where}: {what} {value} not found")
    if conda_file is not None:
        raise ConfigError(f"{conda_where}: conda environments are not supported yet; list pip packages in requirements")

    python = environment.get("python", "3.11")
    if not re.fullmatch(r"3\.[0-9]{1,2}", python):
        raise ConfigError(f"{_where(path, text, 'environment', 'python')}: python must look like \"3.11\", not {python!r}")
    if flags.base_image is not None:
        base_image, image_where = flags.base_image, "--base-image"
    else:
        base_image = environment.get("base_image", f"python:{python}-slim")
        image_where = _where(path, text, "environment", "base_image")
    if not IMAGE_PATTERN.fullmatch(base_image):
        raise ConfigError(
            f"{image_where}: {base_image!r} is not an image reference; use e.g. python:3.11-slim "
            "or myregistry.azurecr.io/python:3.11-slim"
        )

    vendor = flags.vendor if flags.vendor is not None else environment.get("vendor", False)
    image_python = re.search(r"(?:^|/)python:(3\.[0-9]{1,2})(?:[-.@]|$)", base_image)
    if vendor and image_python and image_python.group(1) != python:
        # Vendored wheels are built for one Python; the official images say theirs in the tag.
        raise ConfigError(
            f"{image_where}: {base_image} runs Python {image_python.group(1)}, but the wheels would be vendored "
            f"for Python {python}; set [environment] python = \"{image_python.group(1)}\" so they match")

    platform = environment.get("platform", "linux/amd64")
    if platform not in PLATFORMS:
        raise ConfigError(f"{_where(path, text, 'environment', 'platform')}: platform must be one of {', '.join(PLATFORMS)}")

    template = None
    if "template" in data.get("dockerfile", {}):
        template = Path(base, data["dockerfile"]["template"])
        if not template.is_file():
            raise ConfigError(f"{_where(path, text, 'dockerfile', 'template')}: Dockerfile template {template} not found")

    return Config(
        models=models,
        entry_script=entry,
        source_directory=source_dir,
        requirements=requirements,
        conda_file=conda_file,
        python=python,
        base_image=base_image,
        server=_server(server_data, path, text),
        registry=_registry(registry_data, path, text),
        dockerfile_template=template,
        vendor=vendor,
        platform=platform,
    )


def _models(flags: Flags, data: dict, path: Path, text: str) -> tuple[ModelRef, ...]:
    if flags.models:
        refs, where = list(flags.models), "--model"
    else:
        refs, where = data.get("models", []), _where(path, text, "", "models")
    if not refs:
        raise ConfigError("no model: pass --model NAME:VERSION or set models = [\"NAME:VERSION\"] in bundler.toml")
    parsed = []
    for ref in refs:
        if not isinstance(ref, str):
            raise ConfigError(f"{where}: each model must be a string like \"diabetes:1\", not {ref!r}")
        try:
            parsed.append(parse_ref(ref))
        except InputError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    names = [ref.name for ref in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{where}: model {duplicates[0]!r} is listed twice; list each model once")
    return tuple(parsed)


def _server(data: dict, path: Path, text: str) -> ServerSettings:
    limits = {"port": (1, 65535), "workers": (1, 64), "scoring_timeout": (1, 86400),
              "max_request_bytes": (1, 1 << 40)}
    for key, (low, high) in limits.items():
        if key in data and not low <= data[key] <= high:
            raise ConfigError(f"{_where(path, text, 'server', key)}: {key} must be between {low} and {high}")
    engine = data.get("engine", "auto")
    if engine not in ENGINES:
        raise ConfigError(f"{_where(path, text, 'server', 'engine')}: engine must be one of {', '.join(ENGINES)}")
    return ServerSettings(**{k: v for k, v in data.items() if k in limits}, engine=engine)


def _registry(data: dict, path: Path, text: str) -> RegistryLogin | None:
    if not data:
        return None
    missing = [k for k in ("address", "username", "password_env") if k not in data]
    if missing:
        raise ConfigError(f"{path}: [registry] needs {', '.join(missing)} (the password comes from password_env)")
    if not HOST_PATTERN.fullmatch(data["address"]):
        raise ConfigError(f"{_where(path, text, 'registry', 'address')}: {data['address']!r} is not a registry host name")
    if not ENV_NAME_PATTERN.fullmatch(data["password_env"]):
        raise ConfigError(
            f"{_where(path, text, 'registry', 'password_env')}: password_env must be the NAME of an "
            "environment variable (letters, digits, _), not the password"
        )
    if not SAFE_TEXT_PATTERN.fullmatch(data["username"]) or not data["username"]:
        raise ConfigError(f"{_where(path, text, 'registry', 'username')}: username must be non-empty, one line")
    return RegistryLogin(data["address"], data["username"], data["password_env"])
