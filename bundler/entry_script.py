"""Check an entry script with `ast`: it must define init() and run(); which engine it needs.

User code is never imported or executed at save time: a script may load a 10 GB model
or have side effects, and saving must be safe and fast.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from bundler.errors import EntryScriptError

# Imports that only the reference Azure ML server can serve (raw HTTP access).
AZUREML_ONLY_MODULES = ("azureml.contrib.services", "azureml_inference_server_http")


@dataclass(frozen=True)
class EntryScriptInfo:
    needs_azureml_engine: bool
    azureml_import: str | None  # the import that forced it, for the message


def inspect(path: Path) -> EntryScriptInfo:
    try:
        source = path.read_bytes()
    except IsADirectoryError:
        raise EntryScriptError(f"entry script {path} is a directory; give the .py file, e.g. score.py") from None
    except OSError as exc:
        raise EntryScriptError(f"entry script {path}: cannot read it ({exc.strerror or exc})") from exc
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise EntryScriptError(
            f"{path}:{exc.lineno}: entry script has a syntax error ({exc.msg}); fix it and save again"
        ) from None
    except ValueError as exc:  # e.g. NUL bytes
        raise EntryScriptError(f"{path}: entry script is not Python source ({exc})") from None

    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for required in ("init", "run"):
        if required not in defined:
            raise EntryScriptError(
                f"{path}: entry script defines no top-level {required}() function; "
                "an Azure ML entry script needs init() (load the model) and run(raw_data) (score)"
            )
    azureml_import = _azureml_only_import(tree)
    return EntryScriptInfo(azureml_import is not None, azureml_import)


def _azureml_only_import(tree: ast.Module) -> str | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            if any(name == m or name.startswith(m + ".") for m in AZUREML_ONLY_MODULES):
                return name
    return None
