"""Azure ML SDK v1 code that BUILDS an image (Model.package without generate_dockerfile) runs
as it is, with only its imports changed, against the real local engine: the build log
streams, package.pull() finds the image, and the image's own command serves the model.

tests/azureml_code/package_image.py runs once per module, in a project folder like the one
tests/test_azureml_shim.py makes (its constants are copied here: test modules are not a
library). bundler runs as a user runs it: a subprocess, in the environment where a plain
`podman` uses the tests' storage.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pytest
from azureml_project import make_project
from harness import MEASUREMENTS, REPO, http, serving

SCRIPT = REPO / "tests" / "azureml_code" / "package_image.py"
TAG = "sklearn_regression_model:1"  # Model.package's default: the first model's name and version
SEED_REQUEST = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}
JSON = {"Content-Type": "application/json"}

PASSWORD = "pw-3e9a51c07d"  # a stand-in value for the variable password_env names


@dataclass
class Packaged:
    project: Path
    result: subprocess.CompletedProcess
    seconds: float


@pytest.fixture(scope="module")
def packaged(engine, tmp_path_factory):
    """package_image.py run once, as it is; the image it built is removed afterwards."""
    work = tmp_path_factory.mktemp("azureml-image")
    project = make_project(work / "project")
    env = engine.user_env() if engine.name == "podman" else dict(os.environ)
    env.update({"BUNDLER_HOME": str(work / "registry"), "ACR_PASSWORD": PASSWORD})
    engine.remove_image(TAG)  # a left-over of an earlier run must not pass for this build
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=project, env=env, capture_output=True, text=True, timeout=1800
    )
    seconds = time.monotonic() - started
    MEASUREMENTS["Model.package image build (package_image.py)"] = f"{seconds:.1f} s"
    yield Packaged(project, result, seconds)
    engine.remove_image(TAG)


def test_the_script_builds_the_image_and_streams_the_build_log(engine, packaged):
    result = packaged.result
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    lines = out.splitlines()
    assert lines[0] == "Registering model sklearn_regression_model"
    assert lines[-2:] == [f"Image is local: {TAG}", TAG]  # package.pull(), then print(package.location)
    # The engine's own build output, streamed by wait_for_creation(show_output=True) before
    # the package's note that the build is done.
    built_note = out.index(f"built image {TAG} with {engine.name}")
    if engine.name == "podman":
        stage = r"^(?:\[\d+/\d+\] )?"  # a multi-stage build prefixes each line with its stage
        assert re.search(stage + r"STEP 1/\d+: FROM python:3\.11-slim", out, flags=re.M), out
        commit = re.search(stage + rf"COMMIT {re.escape(TAG)}$", out, flags=re.M)
        assert commit and commit.start() < built_note, out
    else:
        assert re.search(r"FROM .*python:3\.11-slim", out[:built_note]), out
    # The Dockerfile half ran first: its bundle was saved, the login read from the variable.
    assert "Password: " + PASSWORD in lines
    assert (packaged.project / "imagefiles" / "Dockerfile").is_file()


def test_the_image_is_in_the_engines_storage(engine, packaged):
    assert packaged.result.returncode == 0, packaged.result.stdout + packaged.result.stderr
    config = engine.config(TAG)  # fails when the image is not there
    assert "5001/tcp" in config["ExposedPorts"]
    MEASUREMENTS["image size (Model.package)"] = f"{engine.size(TAG) / 1e6:.1f} MB"


def test_the_image_serves_the_models_predictions(engine, packaged):
    assert packaged.result.returncode == 0, packaged.result.stdout + packaged.result.stderr
    model = joblib.load(packaged.project / "sklearn_regression_model.pkl")
    expected = model.predict(np.array(SEED_REQUEST["data"])).tolist()
    with serving(engine, TAG) as (_, port):
        status, body = http("POST", port, "/score", json.dumps(SEED_REQUEST).encode(), JSON)
        assert status == 200
        assert json.loads(body) == pytest.approx(expected)
        assert http("GET", port) == (200, b"Healthy")
