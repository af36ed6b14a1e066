"""registry-login.json, the registry-login manifest: writer (from the plan) and reader (for
`bundler login` and `bundler push`).

For every registry the Dockerfile pulls from, and the one of [registry] that the image is
pushed to: its address, the images, and for a login the user name and WHERE the password
comes from (an environment variable's name), never the password itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bundler import layout
from bundler.errors import BundlerError


@dataclass(frozen=True)
class RegistryEntry:
    address: str
    username: str | None = None
    password_env: str | None = None
    push: str | None = None  # the reference the built image is pushed as


def to_bytes(registries) -> bytes:
    """The file for the plan's registries (plan.RegistrySpec values)."""
    entries = []
    for r in registries:
        entry = {"address": r.address, "images": list(r.images)}
        if r.username is not None:
            entry.update(
                username=r.username,
                password_from={"env": r.password_env},
                login=r.login_command,
                push=r.push,
            )
        elif r.docker_hub:
            entry.update(credentials_required=False)
        else:
            entry.update(
                credentials_required=None,
                note="no [registry] in bundler.toml: log in yourself if this registry is private",
            )
        entries.append(entry)
    return layout.json_bytes({"registries": entries})


def read(bundle: Path) -> tuple[RegistryEntry, ...]:
    layout.require_bundle(bundle)
    path = bundle / layout.REGISTRY_LOGIN
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return tuple(_entry(item) for item in document["registries"])
    except FileNotFoundError:
        raise BundlerError(f"{path} is missing; save the bundle again") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise BundlerError(f"{path} is malformed ({exc.__class__.__name__}); save the bundle again") from None


def _entry(item: dict) -> RegistryEntry:
    password_from = item.get("password_from") or {}
    values = (item["address"], item.get("username"), password_from.get("env"), item.get("push"))
    if not all(value is None or isinstance(value, str) for value in values):
        raise TypeError("a registry's address, username, password_from.env and push must be text")
    return RegistryEntry(*values)
