"""GET /swagger.json: Swagger 2.0 (default), OpenAPI 3 (?version=3) and 3.1, as on Azure.

Documents come from the reference server's templates, with the input and output schema of
an @input_schema/@output_schema-decorated run(); a swagger.json / swagger2.json /
swagger3.json / swagger3.1.json file in the app root is served instead, as on Azure.
Built once per worker at start-up.
"""

from __future__ import annotations

import copy
import json
import os
import sys

from bundler_runtime.entry import EntryScript
from bundler_runtime.settings import Settings

HERE = os.path.dirname(os.path.abspath(__file__))
# version -> (its aliases, also the names inference_schema gives it; template file; user files tried in order)
BUILDERS = {
    "2": (("2", "2.0"), "swagger2_template.json", ("swagger.json", "swagger2.json")),
    "3": (("3", "3.0"), "swagger3_template.json", ("swagger3.json",)),
    "3.1": (("3.1",), "swagger3_template.json", ("swagger3.1.json",)),
}
UNDECORATED = {"type": "object", "example": {}}


class SwaggerDocs:
    def __init__(self, script: EntryScript, settings: Settings):
        self.documents = {}
        supported = []
        for version, (aliases, template, user_files) in BUILDERS.items():
            document = _user_document(settings.app_root, user_files) or _generated(version, template, script, settings)
            if document is not None:
                supported.append(version)
                for alias in aliases:
                    self.documents[alias] = document
        self.supported = sorted(supported)

    def get(self, version: str) -> tuple[dict | None, str]:
        valid = {alias for aliases, _, _ in BUILDERS.values() for alias in aliases}
        if version not in valid:
            return None, (
                f"Swagger version [{version}] is not valid. Supported versions: [{', '.join(self.supported)}]."
            )
        if version not in self.documents:
            return None, (
                f"Swagger version [{version}] is not supported for the scoring script. "
                f"Supported swagger versions: [{', '.join(self.supported)}]."
            )
        return self.documents[version], ""


def _user_document(app_root: str, names) -> dict | None:
    for name in names:
        path = os.path.join(app_root, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
    return None


def _generated(version: str, template: str, script: EntryScript, settings: Settings) -> dict | None:
    schema_util = sys.modules.get("inference_schema.schema_util")
    decorated = script.schema_parameters is not None and schema_util is not None
    if decorated:
        aliases = BUILDERS[version][0]
        if not any(v in schema_util.get_supported_versions(script.run) for v in aliases):
            return None
        input_schema = schema_util.get_input_schema(script.run)
        output_schema = schema_util.get_output_schema(script.run)
    else:
        input_schema = output_schema = copy.deepcopy(UNDECORATED)
    with open(os.path.join(HERE, template), encoding="utf-8") as handle:
        text = handle.read()
    prefix = settings.service_path_prefix.strip("/")
    for placeholder, value in (
        ("$SERVICE_NAME$", settings.service_name),
        ("$SERVICE_VERSION$", settings.service_version),
        ("$PATH_PREFIX$", f"/{prefix}" if prefix else ""),
    ):
        text = text.replace(placeholder, json.dumps(value)[1:-1])
    document = json.loads(text)
    if version == "2":
        document["definitions"]["ServiceInput"] = input_schema
        document["definitions"]["ServiceOutput"] = output_schema
    else:
        document["components"]["schemas"]["ServiceInput"] = input_schema
        document["components"]["schemas"]["ServiceOutput"] = output_schema
        if version == "3.1":
            document["openapi"] = "3.1.0"
    return document
