"""What a newcomer with real Azure ML scripts hit (issue "Hardening", items 9-13)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

GOOD_SCRIPT = "def init():\n    pass\ndef run(raw):\n    return raw\n"
REPO = Path(__file__).resolve().parent.parent
RUNTIME_DIR = REPO / "bundler" / "runtime"
sys.path.insert(0, str(Path(__file__).resolve().parent / "runtime"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- 9. the reference server from a venv that is not activated ------------------------------


def launcher_env(tmp_path: Path, port: int) -> dict:
    write(tmp_path / "app" / "score.py", GOOD_SCRIPT)
    return {
        "PATH": "/usr/bin:/bin",  # the venv's bin folder is NOT on PATH
        "PYTHONPATH": str(RUNTIME_DIR),
        "AML_APP_ROOT": str(tmp_path / "app"),
        "AZUREML_ENTRY_SCRIPT": "score.py",
        "AZUREML_MODEL_DIR": str(tmp_path),
        "BUNDLER_PORT": str(port),
        "HOME": str(tmp_path),
    }


@pytest.mark.reference
def test_the_launcher_finds_azmlinfsrv_beside_a_python_whose_venv_is_not_activated(tmp_path):
    from servers import free_port, require_reference

    python = require_reference().parent / "python"
    port = free_port()
    process = subprocess.Popen(
        [str(python), "-m", "bundler_runtime.reference"],
        env=launcher_env(tmp_path, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stdout.read().decode()
            try:
                out = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/"], capture_output=True, text=True)
                if out.returncode == 0:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)


def test_without_the_reference_server_the_launcher_says_so_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bundler_runtime.reference"],
        env=launcher_env(tmp_path, 5999),
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("cannot start the reference server azmlinfsrv") and "pip install" in lines[0]


# -- 10. inputs the image could not use -----------------------------------------------------


def test_a_conda_file_given_as_requirements_is_named_for_what_it_is(project, cli):
    write(project / "environment.yml", "name: env\nchannels:\n  - conda-forge\ndependencies:\n  - numpy\n")
    result = cli("save", "out", "--model", "m", "--entry-script", "score.py", "--requirements", "environment.yml")
    assert result.exit_code == 2 and "environment.yml:1: this is a conda environment file" in result.output
    assert not (project / "out").exists()


def test_imports_no_requirement_provides_are_noted_not_refused(project, cli):
    write(project / "helpers.py", "X = 1\n")
    write(
        project / "src" / "score.py",
        "import os, json\nimport numpy\nimport sklearn\nimport cv2\nimport joblib\n"
        "from PIL import Image\ntry:\n    import ujson\nexcept ImportError:\n    ujson = None\n" + GOOD_SCRIPT,
    )
    write(project / "src" / "mylib.py", "Y = 2\n")
    write(project / "requirements.txt", "scikit-learn==1.9.1\n")
    result = cli(
        "save",
        "out",
        "--model",
        "m",
        "--source-dir",
        "src",
        "--entry-script",
        "score.py",
        "--requirements",
        "requirements.txt",
    )
    assert result.exit_code == 0
    notes = [line for line in result.output.splitlines() if line.startswith("note: score.py imports")]
    # numpy and joblib come with scikit-learn; os and json are the standard library; ujson is optional.
    assert notes == [
        "note: score.py imports cv2 (line 4), PIL (line 6), which no requirement seems to provide; "
        "add them to your requirements if the image lacks them"
    ]


def test_the_own_modules_of_the_source_folder_are_not_missing(tmp_path):
    from bundler.imports import unprovided

    stdlib = frozenset({"os"})
    assert unprovided((("os", 1), ("mylib", 2), ("numpy", 3)), (), frozenset({"mylib"}), stdlib) == (("numpy", 3),)
    assert unprovided((("sklearn", 1),), ("Scikit_Learn",), frozenset(), stdlib) == ()
    assert unprovided((("azureml", 1),), ("azureml-defaults",), frozenset(), stdlib) == ()


def test_a_schema_script_brings_inference_schema_with_the_server_unless_required(project, cli):
    write(project / "score.py", "from inference_schema.schema_decorators import input_schema\n" + GOOD_SCRIPT)
    result = cli("save", "out", "--model", "m", "--entry-script", "score.py")
    assert result.exit_code == 0 and "added: inference-schema==1.8" in result.output
    assert "inference-schema==1.8" in (project / "out" / "runtime" / "requirements.txt").read_text()
    write(project / "requirements.txt", "azureml-defaults==1.60.0\n")  # brings it, as on Azure
    result = cli("save", "out", "--model", "m", "--entry-script", "score.py", "--requirements", "requirements.txt")
    assert result.exit_code == 0 and "added:" not in result.output
    assert "inference-schema" not in (project / "out" / "runtime" / "requirements.txt").read_text()


# -- 11. no model -----------------------------------------------------------------------------


def test_save_without_a_model_serves_an_empty_model_dir(tmp_path, cli, monkeypatch):
    write(tmp_path / "score.py", GOOD_SCRIPT)
    monkeypatch.chdir(tmp_path)
    result = cli("save", "out", "--entry-script", "score.py")
    assert result.exit_code == 0 and "models: none" in result.output
    dockerfile = (tmp_path / "out" / "Dockerfile").read_text()
    assert 'AZUREML_MODEL_DIR="/var/azureml-app/azureml-models"' in dockerfile
    assert "RUN mkdir -p /var/azureml-app/azureml-models" in dockerfile and "COPY azureml-models/" not in dockerfile

    from bundler.serve import command

    model_dir = Path(command(tmp_path / "out", base_env={}).env["AZUREML_MODEL_DIR"])
    assert model_dir.is_dir() and not any(model_dir.iterdir())
    assert not (tmp_path / "out" / "azureml-models").exists() and cli("verify", "out").exit_code == 0


# -- 13. help -----------------------------------------------------------------------------------


def test_the_command_list_shows_whole_descriptions(cli):
    listing = cli("--help").output
    commands = listing.split("Commands:")[1]
    assert "..." not in commands
    assert "Check every file of BUNDLE (default ./imagefiles) or of an" in commands


@pytest.mark.parametrize("command", ["verify", "serve", "build", "diff", "save", "login", "push", "pack"])
def test_each_bundle_command_names_its_default_folder(cli, command):
    assert "(default ./imagefiles)" in " ".join(cli(command, "--help").output.split())


def test_gc_is_listed(cli):
    assert "gc " in cli("--help").output
