"""Check an entry script with `ast`: it must define init() and run(); which engine it needs,
and which packages it imports (for the checks that the image will provide them).

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
INFERENCE_SCHEMA = "inference_schema"
_OPTIONAL_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}


@dataclass(frozen=True)
class EntryScriptInfo:
    needs_azureml_engine: bool
    azureml_import: str | None  # the import that forced it, for the message
    # Top-level packages it imports by absolute name, with the line of the first import;
    # imports guarded by `except ImportError` are optional and left out.
    imports: tuple[tuple[str, int], ...] = ()

    @property
    def uses_inference_schema(self) -> bool:
        return any(name == INFERENCE_SCHEMA for name, _ in self.imports)


def inspect(path: Path) -> EntryScriptInfo:
    try:
        source = path.read_bytes()
    except IsADirectoryError:
        raise EntryScriptError(f"entry script {path} is a directory; give the .py file, e.g. score.py") from None
    except OSError as exc:
        raise EntryScriptError(f"entry script {path}: cannot read it ({exc.strerror or exc})") from exc
    tree = parse(source, path)
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for required in ("init", "run"):
        if required not in defined:
            raise EntryScriptError(
                f"{path}: entry script defines no top-level {required}() function; "
                "an Azure ML entry script needs init() (load the model) and run(raw_data) (score)"
            )
    azureml_import = _azureml_only_import(tree)
    return EntryScriptInfo(azureml_import is not None, azureml_import, imported_packages(tree))


def parse(source: bytes, path: Path) -> ast.Module:
    """The script's syntax tree; every way it can fail is one line naming the file."""
    try:
        return ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise EntryScriptError(
            f"{path}:{exc.lineno}: entry script has a syntax error ({exc.msg}); fix it and save again"
        ) from None
    except ValueError as exc:  # e.g. NUL bytes
        raise EntryScriptError(f"{path}: entry script is not Python source ({exc})") from None
    except (RecursionError, MemoryError):
        raise EntryScriptError(
            f"{path}: entry script is nested too deeply for Python to compile (an expression or a structure "
            "thousands of levels deep); split it up"
        ) from None


def imported_packages(tree: ast.Module) -> tuple[tuple[str, int], ...]:
    """(top-level package, first line) of every absolute import not guarded by `except ImportError`."""
    optional = {
        id(node)
        for guard in ast.walk(tree)
        if isinstance(guard, ast.Try) and _catches_import_errors(guard)
        for statement in guard.body
        for node in ast.walk(statement)
    }
    found: dict[str, int] = {}
    for name, node in _imports(tree):
        if id(node) not in optional:
            top = name.split(".")[0]
            found[top] = min(found.get(top, node.lineno), node.lineno)
    return tuple(sorted(found.items()))


def _imports(tree: ast.Module):
    """(module name, node) of every absolute import in the script."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node


def _catches_import_errors(node: ast.Try) -> bool:
    for handler in node.handlers:
        if handler.type is None:
            return True
        types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(isinstance(t, ast.Name) and t.id in _OPTIONAL_IMPORT_ERRORS for t in types):
            return True
    return False


def _azureml_only_import(tree: ast.Module) -> str | None:
    for name, _ in _imports(tree):
        if any(name == m or name.startswith(m + ".") for m in AZUREML_ONLY_MODULES):
            return name
    return None
