"""Scores without a model: the length of each base64 payload, and what AZUREML_MODEL_DIR holds."""

import base64
import os

from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("payloads", StandardPythonParameterType(["aGVsbG8="]))
@output_schema(StandardPythonParameterType({"sizes": [5], "model_dir": []}))
def run(payloads):
    sizes = [len(base64.b64decode(p)) for p in payloads]
    return {"sizes": sizes, "model_dir": sorted(os.listdir(os.environ["AZUREML_MODEL_DIR"]))}
