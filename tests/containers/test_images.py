"""Emitted bundles build UNMODIFIED with a real image builder, and the containers serve.

Each test uses the CLI as a user would (register, save), builds the bundle as written, runs
the image's own command and calls it over HTTP on loopback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import joblib
import numpy as np
import pytest
from harness import MEASUREMENTS, REPO, bundler, http, serving
from lint import assert_clean

SEED_REQUEST = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}
JSON = {"Content-Type": "application/json"}


def test_diabetes_example_serves_predictions(engine, diabetes, diabetes_image):
    assert_clean(diabetes / "imagefiles" / "Dockerfile")
    model = joblib.load(diabetes / "model.pkl")
    expected = model.predict(np.array(SEED_REQUEST["data"])).tolist()
    with serving(engine, diabetes_image.tag) as (running, port):
        status, body = http("POST", port, "/score", json.dumps(SEED_REQUEST).encode(), JSON)
        assert status == 200
        assert json.loads(body) == pytest.approx(expected)
        assert http("GET", port) == (200, b"Healthy")
        uid = running.exec(["python", "-c", "import os; print(os.getuid())"])
        assert uid.returncode == 0 and int(uid.stdout.strip()) != 0
        listing = running.exec(
            ["python", "-c", "import os; print(sorted(os.listdir(os.environ['AZUREML_MODEL_DIR'])))"]
        )
        assert listing.stdout.strip() == "['model.pkl']"


QUALITY_PROBE = r"""
import os, shutil, sys
problems = []
for path in ("/root/.cache/pip", "/tmp/bundler", "/var/azureml-app/__pycache__"):
    if os.path.exists(path):
        problems.append("left behind: " + path)
for tool in ("gcc", "cc", "g++", "make"):
    if shutil.which(tool):
        problems.append("build tool in the image: " + tool)
for root in ("/var/azureml-app", "/opt/bundler", "/opt/venv"):
    for folder, dirs, files in os.walk(root):
        for name in [folder] + [os.path.join(folder, f) for f in files]:
            if os.access(name, os.W_OK):
                problems.append("writable by the runtime user: " + name)
                break
print("\n".join(problems[:20]) or "clean")
"""


def test_image_quality(engine, diabetes_image):
    config = engine.config(diabetes_image.tag)
    assert config["User"] not in ("", "root", "0", "0:0")
    assert "5001/tcp" in config["ExposedPorts"]
    health = config.get("Healthcheck") or {}
    assert health.get("Test", [None])[0] == "CMD"
    with serving(engine, diabetes_image.tag) as (running, port):
        probe = running.exec(["python", "-c", QUALITY_PROBE])
        assert probe.stdout.strip() == "clean", probe.stdout + probe.stderr
        check = running.exec(health["Test"][1:], env={"BUNDLER_PORT": str(port)})
        assert check.returncode == 0, check.stdout + check.stderr
        nobody_home = running.exec(health["Test"][1:], env={"BUNDLER_PORT": "9"})  # nothing listens there
        assert nobody_home.returncode == 1


def test_rebuild_after_an_entry_script_edit_reuses_dependency_and_model_layers(engine, diabetes, diabetes_image, home):
    score = diabetes / "score.py"
    score.write_text(score.read_text() + "\n# edited after the first build\n")
    bundler("save", "imagefiles", cwd=diabetes, home=home)
    rebuild = engine.build(diabetes / "imagefiles", "bundler-test/diabetes:edited")
    try:
        cached = cached_steps(engine, rebuild.output)
        assert cached["pip install"] is True, rebuild.output
        assert cached["COPY azureml-models/"] is True, rebuild.output
        assert cached["COPY azureml-app/"] is False, rebuild.output
        reused, total = cache_counts(engine, rebuild.output)
        MEASUREMENTS["rebuild after editing score.py"] = (
            f"{rebuild.seconds:.1f} s ({rebuild.seconds / diabetes_image.seconds:.2f} of the cold build); "
            f"{reused} of {total} steps from the cache"
        )
    finally:
        engine.remove_image(rebuild.tag)


def build_steps(engine, output: str) -> list[tuple[str, bool]]:
    """(instruction, reused from the cache?) for each step of a build's output but FROM."""
    steps = []
    if engine.name == "podman":  # "STEP 7/15: COPY ..." then "--> Using cache <id>" when reused
        for block in re.split(r"^(?:\[\d+/\d+\] )?STEP \d+/\d+: ", output, flags=re.M)[1:]:
            steps.append((block.splitlines()[0] + block[:400], "--> Using cache" in block))
    else:  # BuildKit: "#9 [environment 5/5] RUN ..." then "#9 CACHED"
        cached = set(re.findall(r"^#(\d+) CACHED", output, flags=re.M))
        for number, text in re.findall(r"^#(\d+) \[[^\]]+\] ([^\n]*)", output, flags=re.M):
            steps.append((text, number in cached))
    return [(text, reused) for text, reused in steps if not text.startswith("FROM ")]


def cache_counts(engine, output: str) -> tuple[int, int]:
    """(steps reused from the cache, steps in all but FROM) of a build's output."""
    steps = build_steps(engine, output)
    return sum(reused for _, reused in steps), len(steps)


def cached_steps(engine, output: str) -> dict:
    """{step text fragment: reused from cache?} for the steps the cache rule is about."""
    found = {}
    for text, reused in build_steps(engine, output):
        for fragment in ("pip install", "COPY azureml-models/", "COPY azureml-app/"):
            if text.startswith(("RUN", "COPY")) and fragment in text:
                found.setdefault(fragment, reused)
    return found


TWO_MODELS_SCRIPT = """
import os

def init():
    global contents
    root = os.environ["AZUREML_MODEL_DIR"]
    contents = [open(os.path.join(root, name, "1", name + ".txt")).read() for name in ("first", "second")]

def run(raw_data):
    return contents
"""


def test_two_model_bundle_built_with_bundler_build(engine, tmp_path, home):
    for name in ("first", "second"):
        (tmp_path / f"{name}.txt").write_text(f"I am {name}")
        bundler("register", f"{name}.txt", "--name", name, cwd=tmp_path, home=home)
    (tmp_path / "score.py").write_text(TWO_MODELS_SCRIPT)
    bundler(
        "save",
        "out",
        "--model",
        "first:1",
        "--model",
        "second:1",
        "--entry-script",
        "score.py",
        cwd=tmp_path,
        home=home,
    )
    assert_clean(tmp_path / "out" / "Dockerfile")
    tag = "bundler-test/two-models"
    # `bundler build` as a user runs it; the environment points podman at the tests' storage.
    env = engine.user_env() if engine.name == "podman" else dict(os.environ)
    built = subprocess.run(
        [sys.executable, "-m", "bundler", "build", "out", "-t", tag],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert built.stdout.splitlines()[-1] == f"built image: {tag}"
    try:
        with serving(engine, tag) as (_, port):
            status, body = http("POST", port, "/score", b"{}", JSON)
            assert (status, json.loads(body)) == (200, ["I am first", "I am second"])
    finally:
        engine.remove_image(tag)


def test_source_directory_helper_module_is_importable(engine, tmp_path, home):
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "features.py").write_text("def count(text):\n    return len(text)\n")
    (src / "lib" / "__init__.py").write_text("")
    (src / "lib" / "scale.py").write_text("FACTOR = 10\n")
    (src / "score.py").write_text(
        "from features import count\nfrom lib.scale import FACTOR\n\ndef init():\n    pass\n\n"
        "def run(raw_data):\n    return count(raw_data) * FACTOR\n"
    )
    (src / ".env").write_text("SECRET=never-ship-me\n")
    (tmp_path / "m.bin").write_bytes(b"m")
    bundler("register", "m.bin", "--name", "helper-model", cwd=tmp_path, home=home)
    saved = bundler(
        "save",
        "out",
        "--model",
        "helper-model",
        "--source-dir",
        "src",
        "--entry-script",
        "score.py",
        cwd=tmp_path,
        home=home,
    )
    assert "skipped: .env" in saved.stdout
    build = engine.build(tmp_path / "out", "bundler-test/source-dir")
    try:
        with serving(engine, build.tag) as (running, port):
            assert http("POST", port, "/score", b"abcd", JSON) == (200, b"40")
            assert running.exec(["test", "-e", "/var/azureml-app/.env"]).returncode != 0
    finally:
        engine.remove_image(build.tag)


SIX_WHEEL_SHA256 = "4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274"  # six-1.17.0-py2.py3-none-any


def test_vendored_bundle_builds_with_no_network(engine, tmp_path, home):
    """`save --vendor` carries every wheel: the build succeeds with networking switched off.
    The requirement carries a hash, as pip-compile --generate-hashes writes it: pip then
    checks every package of its run, so the server's own requirements need a run apart."""
    if engine.name == "podman" and not shutil.which("unshare"):
        pytest.fail("unshare (util-linux) is needed for the offline build")
    (tmp_path / "score.py").write_text(
        "import six\n\ndef init():\n    pass\n\ndef run(raw_data):\n    return six.ensure_str(raw_data).upper()\n"
    )
    (tmp_path / "requirements.txt").write_text("-r base.txt\n")  # an include: it must ship, and resolve, too
    (tmp_path / "base.txt").write_text(f"six==1.17.0 \\\n    --hash=sha256:{SIX_WHEEL_SHA256}\n")
    (tmp_path / "m.bin").write_bytes(b"m")
    bundler("register", "m.bin", "--name", "offline", cwd=tmp_path, home=home)
    bundler(
        "save",
        "out",
        "--model",
        "offline",
        "--entry-script",
        "score.py",
        "--requirements",
        "requirements.txt",
        "--vendor",
        cwd=tmp_path,
        home=home,
    )
    tag = "bundler-test/offline"
    if engine.name == "podman":
        command = ["unshare", "-n", *engine.build_command(tmp_path / "out", tag, no_cache=True)]
    else:
        command = ["docker", "build", "--network", "none", "--no-cache", "-t", tag, str(tmp_path / "out")]
    built = subprocess.run(command, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    try:
        with serving(engine, tag) as (_, port):
            assert http("POST", port, "/score", b'"quiet"', JSON) == (200, b'"\\"QUIET\\""')
    finally:
        engine.remove_image(tag)


def test_a_schema_script_without_a_model_or_inference_schema_requirement_serves(engine, tmp_path, home):
    """As Azure deploys the binary-payload samples: no model (AZUREML_MODEL_DIR is an empty
    folder) and an @input_schema run() whose requirements do not name inference-schema (the
    server's requirements bring it, as Azure's server does)."""
    case = REPO / "tests" / "cases" / "no_model"
    shutil.copytree(case, tmp_path / "case")
    bundler(
        "save",
        "out",
        "--entry-script",
        "score.py",
        "--requirements",
        "requirements.txt",
        cwd=tmp_path / "case",
        home=home,
    )
    build = engine.build(tmp_path / "case" / "out", "bundler-test/no-model")
    try:
        with serving(engine, build.tag) as (_, port):
            status, body = http("POST", port, "/score", b'{"payloads": ["aGVsbG8=", "YQ=="]}', JSON)
            assert (status, json.loads(body)) == (200, {"sizes": [5, 1], "model_dir": []})
    finally:
        engine.remove_image(build.tag)


CONDA_FILE = """name: project_environment
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - scikit-learn==1.9.1
  - numpy==2.4.6
  - pip:
    - joblib==1.6.0
"""


def test_a_conda_file_of_the_azure_shape_builds_with_the_pip_builder_and_serves(engine, diabetes, home, tmp_path):
    """The diabetes example with a conda file instead of its requirements: every package has
    an exact PyPI twin, so the image is the usual venv on python:3.11-slim, and it predicts."""
    work = tmp_path / "conda"
    shutil.copytree(diabetes, work, ignore=shutil.ignore_patterns("imagefiles", "bundler.toml", "requirements.txt"))
    (work / "conda_dependencies.yml").write_text(CONDA_FILE)
    saved = bundler(
        "save",
        "out",
        "--model",
        "diabetes:1",
        "--entry-script",
        "score.py",
        "--conda-file",
        "conda_dependencies.yml",
        cwd=work,
        home=home,
    )
    assert "environment: pip builder" in saved.stdout
    build = engine.build(work / "out", "bundler-test/conda-pip")
    try:
        with serving(engine, build.tag) as (_, port):
            status, body = http("POST", port, "/score", json.dumps(SEED_REQUEST).encode(), JSON)
            assert status == 200 and len(json.loads(body)) == 2
    finally:
        engine.remove_image(build.tag)
