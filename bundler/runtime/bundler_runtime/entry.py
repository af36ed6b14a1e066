"""Load the user's entry script and describe how run() wants its input.

The app root and the script's folder are importable, appended to the path so they never
shadow a standard module (the reference server adds only the app root, so under engine
"azureml" a helper beside an entry script in a subfolder does not import);
run() gets the body as a str, or, when decorated with inference_schema's @input_schema,
the JSON body's fields as named arguments; a `request_headers` parameter receives the
request's headers. @rawhttp scripts need the reference server (engine "azureml").
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable


class EntryScriptError(RuntimeError):
    pass


@dataclass(frozen=True)
class EntryScript:
    module: Any
    init: Callable[[], Any]
    run: Callable[..., Any]
    schema_parameters: tuple | None  # inspect.Parameters when @input_schema, else None
    input_name: str  # run()'s first parameter, for the str input
    wants_headers: bool

    def call(self, arguments: dict, headers: dict) -> Any:
        if self.wants_headers:
            return self.run(**arguments, request_headers=headers)
        return self.run(**arguments)


def load(path: str, app_root: str) -> EntryScript:
    for folder in (app_root, os.path.dirname(os.path.abspath(path))):
        if folder not in sys.path:
            sys.path.append(folder)
    spec = importlib.util.spec_from_file_location("entry_module", path)
    if spec is None or spec.loader is None:
        raise EntryScriptError(f"entry script {path} cannot be loaded (is it a .py file?)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # errors propagate: the caller logs them and stops
    for name in ("init", "run"):
        if not callable(getattr(module, name, None)):
            raise EntryScriptError(f"entry script {path} does not define a {name}() function")
    driver = getattr(module, "driver_module", None)  # Azure's generated proxy scripts
    run = driver.run if driver is not None and hasattr(driver, "run") else module.run
    return _describe(module, module.init, run)


def _describe(module, init, run) -> EntryScript:
    if _raw_http_requested():
        raise EntryScriptError(
            "run() is decorated with @rawhttp, which only the reference Azure ML server supports; "
            'save the bundle with [server] engine = "azureml"'
        )
    parameters = list(inspect.signature(run).parameters.values())
    if any(p.kind not in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters):
        raise EntryScriptError("run() cannot accept positional-only arguments, *args, or **kwargs.")
    wants_headers = any(p.name == "request_headers" for p in parameters)
    parameters = [p for p in parameters if p.name != "request_headers"]
    if not parameters:
        raise EntryScriptError("run() needs to accept an argument for input data.")
    schema = tuple(parameters) if is_schema_decorated(run) else None
    return EntryScript(module, init, run, schema, parameters[0].name, wants_headers)


def is_schema_decorated(func) -> bool:
    util = sys.modules.get("inference_schema.schema_util")
    return bool(util and util.is_schema_decorated(func))


def _raw_http_requested() -> bool:
    request_module = sys.modules.get("azureml.contrib.services.aml_request")
    return bool(getattr(request_module, "_rawHttpRequested", False))
