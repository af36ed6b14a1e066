"""The config file itself: read it (UTF-8, a byte-order mark allowed), parse it as TOML,
check it against the schema (unknown keys with a did-you-mean, wrong types, secrets), and
say where each key is (FILE:LINE), since tomllib gives no positions. What the values mean
is config.py's business.
"""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundler.deploy import SETTINGS_TYPES as DEPLOY_SETTINGS
from bundler.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

DEFAULT_CONFIG_NAME = "bundler.toml"
SECRET_KEYS = ("password", "passwd", "token", "secret", "api_key", "apikey", "access_key")

# The schema: table -> key -> the type its value must have. "" is the top level.
SCHEMA: dict[str, dict[str, type]] = {
    "": {"models": list},
    "inference": {"entry_script": str, "source_directory": str},
    "environment": {
        "requirements": str,
        "conda_file": str,
        "conda_builder": str,
        "python": str,
        "base_image": str,
        "vendor": bool,
        "platform": str,
        "with_base_image": bool,
        "index_url": str,
        "extra_index_urls": list,
        "ca_certificates": list,
        "trust_ca_at_runtime": bool,
    },
    "server": {"port": int, "workers": int, "scoring_timeout": int, "max_request_bytes": int, "engine": str},
    "registry": {"address": str, "username": str, "password_env": str},
    "dockerfile": {"template": str},
    "deploy": DEPLOY_SETTINGS,
    "secrets": {"allow": list},
}


@dataclass(frozen=True)
class Setting:
    """A value and where it came from, so that any later error can name its origin."""

    value: Any
    where: str  # "--requirements", or "bundler.toml:7: [environment] requirements"
    base: Path  # what a relative path in it is relative to

    @property
    def path(self) -> Path:
        return Path(self.base, self.value)


class Document:
    """The config file as read and checked against the schema; empty when there is none."""

    def __init__(self, path: Path, text: str, data: dict[str, Any], base: Path):
        self.path, self.text, self.data, self.base = path, text, data, base

    @classmethod
    def read(cls, given: Path | None, cwd: Path) -> Document:
        """The file given (--config), else ./bundler.toml if there is one, else an empty document."""
        if given is not None and not Path(cwd, given).is_file():
            raise ConfigError(f"config file {given} not found; check the --config path")
        path = Path(cwd, given if given is not None else DEFAULT_CONFIG_NAME)
        if not path.is_file():
            return cls(path, "", {}, cwd)
        text = _read_text(path)
        document = cls(path, text, _parse(text, path), path.parent)
        document.check_schema()
        return document

    def table(self, name: str) -> dict[str, Any]:
        return self.data if name == "" else self.data.get(name, {})

    def setting(self, table: str, key: str) -> Setting | None:
        values = self.table(table)
        return Setting(values[key], self.where(table, key), self.base) if key in values else None

    def where(self, table: str, key: str) -> str:
        """'FILE:LINE: [table] key' — tomllib gives no positions, so find the line by scanning."""
        qualified = f"[{table}] {key}" if table else key
        line = _line_of(self.text, table, key)
        return f"{self.path}:{line}: {qualified}" if line else f"{self.path}: {qualified}"

    def check_schema(self) -> None:
        for key, value in self.data.items():
            if isinstance(value, dict) and key in SCHEMA and key != "":
                for sub, subvalue in value.items():
                    self._check_key(key, sub, subvalue)
            else:
                self._check_key("", key, value)

    def _check_key(self, table: str, key: str, value: Any) -> None:
        where = self.where(table, key)
        lowered = key.lower()
        if key != "password_env" and (
            lowered in SECRET_KEYS or any(s in lowered for s in ("password", "token", "secret"))
        ):
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
        if not isinstance(value, expected) or (
            int in (expected if isinstance(expected, tuple) else (expected,)) and isinstance(value, bool)
        ):
            raise ConfigError(f"{where}: {key!r} must be {_type_name(expected)}, not {_type_name(type(value))}")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from exc
    try:
        return raw.decode("utf-8-sig")  # an editor's byte-order mark is not part of the TOML, as for requirements
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text file (byte {exc.start} is not UTF-8); bundler.toml must be TOML"
        ) from exc


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}; fix the syntax there") from exc
    except (RecursionError, MemoryError):
        raise ConfigError(
            f"{path}: invalid TOML: values nested too deeply to read; a bundler.toml holds flat tables of short values"
        ) from None


def _type_name(kind: Any) -> str:
    names = {
        str: "a string",
        int: "a whole number",
        list: "a list",
        bool: "true or false",
        float: "a number",
        dict: "a table",
    }
    if isinstance(kind, tuple):
        return " or ".join(_type_name(k) for k in kind)
    return names.get(kind, getattr(kind, "__name__", str(kind)))


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
