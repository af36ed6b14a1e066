"""The bundle contract (bundler/layout.py) and its prose twin (docs/bundle-layout.md) agree,
and the manifest reads back what it writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bundler import layout
from bundler.errors import BundlerError

DOC = (Path(__file__).resolve().parent.parent / "docs" / "bundle-layout.md").read_text()


@pytest.mark.parametrize(
    "name",
    [
        "MANIFEST",
        "REGISTRY_LOGIN",
        "DOCKERFILE",
        "DOCKERIGNORE",
        "README",
        "MODELS_DIR",
        "APP_DIR",
        "RUNTIME_PACKAGE",
        "RUNTIME_REQUIREMENTS",
        "DEFAULT_REQUIREMENTS",
        "WHEELS_DIR",
        "APP_ROOT",
        "MODELS_ROOT",
        "VENV",
        "RUNTIME_ROOT",
        "BUILD_ROOT",
        "USER_NAME",
        "USER_ID",
    ],
)
def test_every_name_of_the_layout_is_in_the_doc(name):
    assert str(getattr(layout, name)) in DOC


def test_the_docs_command_and_health_check_are_the_images():
    assert f"CMD {json.dumps(list(layout.server_command('bundler')))}" in DOC.replace("`", "")
    assert f"HEALTHCHECK CMD {json.dumps(list(layout.HEALTHCHECK))}" in DOC.replace("`", "")
    assert layout.server_command("azureml")[-1] in DOC


def test_the_docs_variables_are_the_ones_the_server_gets():
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", DOC, re.M))
    env = layout.server_variables(layout.IMAGE, "score.py", (("m", 1),), layout.ServerSettings(), "bundler")
    assert documented == {name for name, _ in env}
    defaults = layout.ServerSettings()
    for name, value in (("BUNDLER_PORT", defaults.port), ("BUNDLER_MAX_REQUEST_BYTES", defaults.max_request_bytes)):
        assert re.search(rf"^\| `{name}` \|.*\| {value} \|$", DOC, re.M)


def test_the_docs_manifest_is_one_the_reader_accepts_with_every_key_the_writer_writes():
    example = re.search(r"## `bundle.json`\n\n((?:    .*\n)+)", DOC).group(1)
    document = json.loads(example.replace("...", "0" * 64))
    manifest = layout.Manifest.from_bytes(json.dumps(document).encode())
    written = json.loads(manifest.to_bytes())

    def keys(value, prefix=""):
        if isinstance(value, dict):
            return {k for key, item in value.items() for k in {prefix + key} | keys(item, prefix + key + ".")}
        if isinstance(value, list):
            return set().union(*(keys(item, prefix) for item in value))
        return set()

    assert keys(written) - keys(written["files"], "files.") == keys(document) - keys(document["files"], "files.")


def test_model_dir_is_the_models_folder_for_one_model_and_their_parent_for_several():
    assert layout.model_dir(layout.IMAGE, (("diabetes", 1),)) == "/var/azureml-app/azureml-models/diabetes/1"
    assert layout.model_dir(layout.IMAGE, (("a", 1), ("b", 2))) == "/var/azureml-app/azureml-models"
    here = layout.Places.in_bundle(Path("/b"))
    assert layout.model_dir(here, (("a", 3),)) == "/b/azureml-models/a/3"


def test_the_image_and_serve_share_the_servers_variables():
    settings = layout.ServerSettings(port=6000, workers=2)
    image = dict(layout.image_variables("pkg/score.py", (("m", 1),), settings, "bundler"))
    served = dict(
        layout.server_variables(layout.Places.in_bundle(Path("/b")), "pkg/score.py", (("m", 1),), settings, "bundler")
    )
    assert {k: v for k, v in image.items() if k.startswith("BUNDLER_")} == {
        k: v for k, v in served.items() if k.startswith("BUNDLER_")
    }
    assert image["AZUREML_ENTRY_SCRIPT"] == served["AZUREML_ENTRY_SCRIPT"] == "pkg/score.py"
    assert list(image)[:3] == ["PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"]
    assert "BUNDLER_MAX_REQUEST_BYTES" not in dict(
        layout.image_variables("s.py", (("m", 1),), settings, "azureml")
    )  # azmlinfsrv has no such limit


def test_the_manifest_reads_back_what_it_writes():
    manifest = layout.Manifest(
        generator_version="0.1.0",
        models=(layout.ModelRecord("m", 2, (("a/b.bin", "f" * 64, 7),)),),
        entry_script="score.py",
        requirements_file="environment/prod.txt",
        engine="azureml",
        base_image="python:3.11-slim",
        server=layout.ServerSettings(port=6000),
        vendor=True,
        files={"Dockerfile": layout.FileRecord(0o644, 10, "e" * 64)},
    )
    assert layout.Manifest.from_bytes(manifest.to_bytes()) == manifest
    assert manifest.to_bytes().endswith(b"}\n") and b"  " in manifest.to_bytes()


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"files": []}',
        '{"files": {"a": 1}}',
        '{"files": {}, "inputs": {"models": [{"name": "a"}]}}',
        '{"files": {}, "inputs": {"requirements_file": "../../etc/passwd"}}',
        "{" * 100000,
        b"\xff",
    ],
)
def test_a_malformed_manifest_is_one_line_naming_the_file(tmp_path, text):
    (tmp_path / "bundle.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(
        BundlerError, match=r"bundle.json: not a readable bundle manifest \(.+\); save the bundle again"
    ):
        layout.read_manifest(tmp_path)


def test_not_a_bundle_says_how_to_make_one(tmp_path):
    with pytest.raises(BundlerError, match="is not a bundle \\(no bundle.json\\); make one with: bundler save"):
        layout.read_manifest(tmp_path)


def test_every_variable_the_image_sets_is_reserved_from_a_conda_file():
    settings = layout.ServerSettings()
    for engine in ("bundler", "azureml"):
        names = [name for name, _ in layout.image_variables("s.py", (("m", 1),), settings, engine)]
        assert names and all(layout.reserved_variable(name) for name in names + ["PATH"])
    assert not layout.reserved_variable("OMP_NUM_THREADS")  # a conda file's own tuning stays possible
