"""`bundler serve`: the bundle's own runtime, here, with the container's environment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from bundler.errors import BundlerError
from bundler.serve import command, missing_requirements, same_version

SCRIPT = "import json\ndef init():\n    pass\ndef run(raw):\n    return {'got': json.loads(raw)}\n"


@pytest.fixture
def bundle(tmp_path, cli, monkeypatch):
    (tmp_path / "score.py").write_text(SCRIPT)
    (tmp_path / "a.bin").write_bytes(b"a")
    (tmp_path / "b.bin").write_bytes(b"b")
    monkeypatch.chdir(tmp_path)
    cli("register", "a.bin", "--name", "alpha")

    def make(*models):
        result = cli("save", "out", *[f"--model={m}" for m in models], "--entry-script", "score.py")
        assert result.exit_code == 0, result.output
        return tmp_path / "out"

    return make


def test_command_sets_the_containers_environment(bundle):
    out = bundle("alpha:1")
    cmd = command(out, base_env={"PYTHONPATH": "/elsewhere"})
    assert cmd.argv == (sys.executable, "-m", "bundler_runtime")
    assert cmd.env["AML_APP_ROOT"] == str(out / "azureml-app")
    assert cmd.env["AZUREML_ENTRY_SCRIPT"] == "score.py"
    assert cmd.env["AZUREML_MODEL_DIR"] == str(out / "azureml-models" / "alpha" / "1")
    assert cmd.env["PYTHONPATH"] == os.pathsep.join([str(out / "runtime"), "/elsewhere"])
    assert (cmd.env["BUNDLER_PORT"], cmd.env["BUNDLER_WORKERS"]) == ("5001", "1")
    assert command(out, port=6000, workers=3, base_env={}).env["BUNDLER_PORT"] == "6000"
    assert cmd.env["BUNDLER_HOST"] == "127.0.0.1"  # a try-out listens on this machine only
    assert command(out, base_env={}, host="0.0.0.0").env["BUNDLER_HOST"] == "0.0.0.0"


@pytest.mark.parametrize(
    "inputs",
    [
        '{"models": [1], "entry_script": "score.py"}',
        '{"models": [{"name": "a"}], "entry_script": "score.py"}',
        '{"models": [{"name": "a", "version": 1}], "entry_script": 7}',
        '{"models": [{"name": "a", "version": 1}], "entry_script": "s.py", "server": 5}',
    ],
)
def test_a_manifest_with_malformed_inputs_is_one_line(bundle, inputs):
    out = bundle("alpha:1")
    (out / "bundle.json").write_text('{"files": {}, "inputs": ' + inputs + "}")
    with pytest.raises(
        BundlerError, match=r"bundle.json: not a readable bundle manifest \(.+\); save the bundle again"
    ):
        command(out)


def test_the_reference_engine_is_started_by_the_launcher_and_its_address_is_said(bundle, tmp_path):
    (tmp_path / "bundler.toml").write_text('[server]\nengine = "azureml"\n')
    out = bundle("alpha:1")
    cmd = command(out, base_env={})
    assert cmd.argv == (sys.executable, "-m", "bundler_runtime.reference")
    assert cmd.notes == (
        "note: engine azureml: the reference server listens on every interface (0.0.0.0), not 127.0.0.1",
    )


def test_several_models_share_the_models_folder(bundle, cli):
    cli("register", "b.bin", "--name", "beta")
    out = bundle("alpha:1", "beta:1")
    assert command(out, base_env={}).env["AZUREML_MODEL_DIR"] == str(out / "azureml-models")


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundlerError, match="not a bundle"):
        command(tmp_path)


def test_missing_requirements_are_named(bundle, cli):
    out = bundle("alpha:1")
    (out / "environment" / "requirements.txt").write_text("surely-not-installed-pkg==1.0\nclick\npytest==0.0.1\n")
    problems = missing_requirements(out)
    assert problems[0] == "surely-not-installed-pkg"
    assert problems[1].startswith("pytest==0.0.1 (have ")
    assert len(problems) == 2
    result = subprocess.run([sys.executable, "-m", "bundler", "serve", str(out)], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "surely-not-installed-pkg" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "pin, have, same",
    [
        ("1.6", "1.6.0", True),
        ("1.6.0", "1.6", True),
        ("2", "2.0.0", True),
        ("1.6", "1.6.1", False),
        ("1.10", "1.1", False),
        ("2.0rc1", "2.0rc1", True),
        ("2.0rc1", "2.0", False),
        ("1.0", "1.0.post1", False),
    ],
)
def test_pins_compare_as_pip_compares_them(pin, have, same):
    assert same_version(pin, have) is same


def test_a_pin_with_fewer_zeros_is_not_missing(bundle, cli):
    from importlib.metadata import version

    out = bundle("alpha:1")
    (out / "environment" / "requirements.txt").write_text(f"click=={version('click')}.0\n")
    assert missing_requirements(out) == []


def test_serve_answers_score(bundle):
    from runtime.servers import free_port

    out = bundle("alpha:1")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bundler", "serve", str(out), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/score", data=b'{"x": 1}', headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    assert json.loads(response.read()) == {"got": {"x": 1}}
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, process.stdout.read()
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
