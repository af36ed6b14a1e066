"""`bundler save` end to end (without a container): the bundle's contents, the manifest,
determinism whatever the host, and that user code is never run at save time."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest
from golden_tree import read_tree

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "diabetes"


@pytest.fixture
def example(tmp_path, cli, monkeypatch):
    """The diabetes example with a stand-in model file, registered as diabetes:1."""
    work = tmp_path / "work"
    shutil.copytree(EXAMPLE, work)
    (work / "model.pkl").write_bytes(b"stand-in model")
    monkeypatch.chdir(work)
    assert cli("register", "model.pkl", "--name", "diabetes").output.strip() == "diabetes:1"
    return work


@pytest.mark.parametrize(
    "name, image",
    [
        ("diabetes", "diabetes"),
        ("My_Model.v2", "my_model.v2"),
        ("x__y", "x__y"),
        ("a--b", "a--b"),
        ("A..B", "a-b"),
        ("model-", "model"),
        ("a_-b", "a-b"),
        ("m.", "m"),
        ("a___b", "a-b"),
    ],
)
def test_the_suggested_image_name_is_one_docker_accepts(name, image):
    from bundler.layout import image_name

    assert image_name(name) == image


def test_the_suggested_command_quotes_the_path(example, cli):
    (example / "bundler.toml").unlink()
    result = cli("save", "my bundle", "--model", "diabetes", "--entry-script", "score.py")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "next: docker build --tag diabetes 'my bundle'"


def test_save_defaults_to_imagefiles_and_reports(example, cli):
    result = cli("save")
    assert result.exit_code == 0, result.output
    assert "engine: bundler" in result.output
    assert result.output.splitlines()[-1] == "next: docker build --tag diabetes imagefiles"
    bundle = example / "imagefiles"
    assert (bundle / "azureml-models/diabetes/1/model.pkl").read_bytes() == b"stand-in model"
    assert (bundle / "azureml-app/score.py").read_bytes() == (example / "score.py").read_bytes()
    assert (bundle / "environment/requirements.txt").read_bytes() == (example / "requirements.txt").read_bytes()
    assert (bundle / "runtime/requirements.txt").is_file()


def test_manifest_lists_every_other_file_exactly(example, cli):
    cli("save")
    bundle = example / "imagefiles"
    manifest = json.loads((bundle / "bundle.json").read_text())
    on_disk = {p.relative_to(bundle).as_posix(): p for p in bundle.rglob("*") if p.is_file()}
    del on_disk["bundle.json"]
    assert sorted(manifest["files"]) == sorted(on_disk)
    for rel, path in on_disk.items():
        meta = manifest["files"][rel]
        assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert meta["size"] == path.stat().st_size
        assert meta["mode"] == f"{path.stat().st_mode & 0o777:04o}"
    model = manifest["inputs"]["models"][0]
    assert model["ref"] == "diabetes:1"
    assert model["files"] == [
        {"path": "model.pkl", "sha256": hashlib.sha256(b"stand-in model").hexdigest(), "size": 14}
    ]
    assert manifest["generator"]["name"] == "bundler"


def test_no_host_facts_enter_the_bundle(example, cli, isolated_home):
    cli("save")
    markers = [str(example), str(isolated_home), os.environ.get("USER", "root-user-name-unlikely"), "2026"]
    for path in (example / "imagefiles").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for marker in markers:
                assert marker.encode() not in data, f"{marker!r} leaked into {path.name}"


def _reversed_walk(real_walk):
    def walk(top, *args, **kwargs):
        for dirpath, dirnames, filenames in real_walk(top, *args, **kwargs):
            dirnames.reverse()
            filenames.reverse()
            yield dirpath, dirnames, filenames

    return walk


def test_same_inputs_same_bytes_whatever_the_host(tmp_path, cli, monkeypatch):
    """cwd, umask, time zone, locale, registry location and listing order must not matter."""
    case = REPO / "tests" / "cases" / "model_dir_with_source"
    trees = []
    for attempt, (umask, tz, lang) in enumerate([(0o022, "UTC", "C.UTF-8"), (0o077, "Asia/Kolkata", "de_DE.UTF-8")]):
        work = tmp_path / f"attempt{attempt}" / ("deeper/" * attempt) / "project"
        shutil.copytree(case, work)
        (work / "src" / "helpers" / "run.sh").chmod(0o755)
        monkeypatch.setenv("BUNDLER_HOME", str(tmp_path / f"home{attempt}"))
        monkeypatch.setenv("TZ", tz)
        monkeypatch.setenv("LANG", lang)
        monkeypatch.chdir(work)
        if attempt:
            import bundler.sources

            monkeypatch.setattr(bundler.sources.os, "walk", _reversed_walk(os.walk))
        old = os.umask(umask)
        try:
            assert cli("register", "model_dir", "--name", "embedder").exit_code == 0
            result = cli("save", "out")
            assert result.exit_code == 0, result.output
        finally:
            os.umask(old)
        tree = read_tree(work / "out")
        modes = {p.relative_to(work / "out").as_posix(): p.stat().st_mode & 0o777 for p in (work / "out").rglob("*")}
        trees.append((tree, modes))
    assert trees[0] == trees[1]
    assert set(trees[0][1].values()) <= {0o644, 0o755}


def test_entry_script_is_never_executed(example, cli, tmp_path):
    marker = tmp_path / "executed"
    (example / "score.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\ndef init():\n    pass\ndef run(raw):\n    return raw\n"
    )
    assert cli("save").exit_code == 0
    assert not marker.exists()


def test_output_inside_source_directory_is_not_copied_into_itself(tmp_path, cli, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    (src / "score.py").write_text("def init(): pass\ndef run(r): return r\n")
    (tmp_path / "m").write_bytes(b"m")
    monkeypatch.chdir(src)
    cli("register", tmp_path / "m", "--name", "m")
    for _ in range(2):  # the second save finds the first bundle inside the source directory
        result = cli("save", "imagefiles", "--model", "m", "--entry-script", "score.py", "--source-dir", ".")
        assert result.exit_code == 0, result.output
    app = src / "imagefiles" / "azureml-app"
    assert sorted(p.relative_to(app).as_posix() for p in app.rglob("*")) == ["score.py"]


def test_azureml_raw_http_script_selects_the_reference_engine(example, cli):
    (example / "score.py").write_text(
        "from azureml.contrib.services.aml_response import AMLResponse\n"
        "def init():\n    pass\ndef run(request):\n    return AMLResponse('ok', 200)\n"
    )
    result = cli("save")
    assert "engine: azureml (the entry script imports azureml.contrib.services.aml_response" in result.output
    dockerfile = (example / "imagefiles" / "Dockerfile").read_text()
    # azmlinfsrv, started by the runtime's launcher so BUNDLER_* overrides reach it too
    assert 'CMD ["python", "-m", "bundler_runtime.reference"]' in dockerfile and "WORKER_COUNT" not in dockerfile
    # The reference server has no body limit: the image neither sets nor offers one.
    assert "BUNDLER_MAX_REQUEST_BYTES" not in dockerfile
    assert "BUNDLER_MAX_REQUEST_BYTES" not in (example / "imagefiles" / "README.md").read_text()
    assert "azureml-inference-server-http==" in (example / "imagefiles/runtime/requirements.txt").read_text()


def test_templates_ship_inside_the_wheel(tmp_path):
    """A non-editable install, run from another folder, renders the same bundle."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", wheels, REPO],
        check=True,
        capture_output=True,
    )
    wheel = next(wheels.glob("bundler-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    # --no-deps: click, jinja2 and pathspec come from this interpreter's site-packages, listed
    # after the new venv's own (where the wheel goes) by a .pth file.
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet", wheel],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(EXAMPLE, elsewhere)
    (elsewhere / "model.pkl").write_bytes(b"m")
    env = {**os.environ, "BUNDLER_HOME": str(tmp_path / "home")}

    def run(*args):
        return subprocess.run(
            [python, "-m", "bundler", *args], cwd=elsewhere, env=env, check=True, capture_output=True, text=True
        )

    check = subprocess.run(
        [python, "-c", "import bundler, sys; print(bundler.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(env_dir) in check.stdout, "the wheel, not the source tree, must be imported"
    assert run("register", "model.pkl", "--name", "diabetes").stdout.strip() == "diabetes:1"
    run("save")
    dockerfile = (elsewhere / "imagefiles" / "Dockerfile").read_text()
    assert dockerfile.startswith("# Dockerfile for diabetes:1, generated by bundler")
    assert (elsewhere / "imagefiles" / "README.md").is_file()


def test_dockerignore_keeps_every_model_and_app_file(tmp_path, cli, monkeypatch):
    """A model or app file named like a Python cache still reaches the image (docker reads .dockerignore)."""
    import pathspec

    (tmp_path / "mdl" / "__pycache__").mkdir(parents=True)
    (tmp_path / "mdl" / "__pycache__" / "code.cpython-311.pyc").write_bytes(b"c")
    (tmp_path / "mdl" / "weights.pyc").write_bytes(b"w")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    (tmp_path / "src" / "sauce.pyc").write_bytes(b"s")
    (tmp_path / "src" / ".bundlerignore").write_text("!*.pyc\n")
    monkeypatch.chdir(tmp_path)
    assert cli("register", "mdl", "--name", "m").exit_code == 0
    assert cli("save", "out", "--model", "m", "--source-dir", "src", "--entry-script", "score.py").exit_code == 0
    out = tmp_path / "out"
    ignored = pathspec.GitIgnoreSpec.from_lines((out / ".dockerignore").read_text().splitlines())
    shipped = [p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()]
    assert {
        "azureml-models/m/1/mdl/weights.pyc",
        "azureml-models/m/1/mdl/__pycache__/code.cpython-311.pyc",
        "azureml-app/sauce.pyc",
    } <= set(shipped)
    assert sorted(p for p in shipped if ignored.match_file(p)) == [
        "README.md",
        "bundle.json",
        "deploy/compose.yaml",  # for kubectl and compose, not for the build
        "deploy/kubernetes.yaml",
        "registry-login.json",
    ]
