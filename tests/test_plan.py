"""The plan on its own: inputs built in memory, no registry, no file on disk. Every path
below names nothing that exists, which also shows that planning reads no file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bundler import layout
from bundler.config import Config
from bundler.entries import Copied, Generated, RegistryBlob
from bundler.entry_script import EntryScriptInfo
from bundler.errors import ConfigError, EntryScriptError, SourceError
from bundler.plan import Inputs, RuntimeFiles, StoredModel, make
from bundler.registry import ModelFile, ModelRef, ModelVersion
from bundler.requirements import Requirement, RequirementFiles
from bundler.sources import SourceFile, SourceSelection

NOWHERE = Path("/nonexistent-bundler-test")
RUNTIME = RuntimeFiles(((f"{layout.RUNTIME_PACKAGE}/server.py", NOWHERE / "rt" / "server.py"),), b"gunicorn==27.0.1\n")
PLAIN_SCRIPT = EntryScriptInfo(needs_azureml_engine=False, azureml_import=None)


def model(name="diabetes", version=1, files=(("model.pkl", "a" * 64, 30),)):
    record = ModelVersion(name, version, tuple(ModelFile(*f) for f in files))
    return StoredModel(record, tuple(NOWHERE / "blobs" / sha for _, sha, _ in files))


def inputs(**changes) -> Inputs:
    config = Config(models=(ModelRef("diabetes", 1),), entry_script=NOWHERE / "score.py")
    base = Inputs(
        config=config, models=(model(),), entry=PLAIN_SCRIPT, sources=None, requirements=None, runtime=RUNTIME
    )
    return replace(base, **changes)


def requirement_files(*files, hashed=False, pinned=True):
    reqs = (Requirement("numpy", "1.26.4" if pinned else None, 1),)
    return RequirementFiles(tuple((rel, NOWHERE / "req" / rel) for rel in files), reqs, hashed)


def test_every_file_and_where_its_bytes_come_from():
    plan = make(inputs(requirements=requirement_files("requirements.txt")))
    by_path = {e.path: e for e in plan.files}
    assert list(by_path) == sorted(by_path)
    assert by_path["azureml-models/diabetes/1/model.pkl"].content == RegistryBlob(
        NOWHERE / "blobs" / ("a" * 64), "a" * 64, 30
    )
    assert by_path["azureml-app/score.py"].content == Copied(NOWHERE / "score.py")
    assert by_path["environment/requirements.txt"].content == Copied(NOWHERE / "req" / "requirements.txt")
    assert by_path["runtime/bundler_runtime/server.py"].content == Copied(NOWHERE / "rt" / "server.py")
    assert by_path["runtime/requirements.txt"].content == Generated(b"gunicorn==27.0.1\n")
    assert {e.mode for e in plan.files} == {layout.FILE_MODE}


def test_without_requirements_an_explaining_file_is_installed():
    plan = make(inputs())
    entry = {e.path: e for e in plan.files}[layout.DEFAULT_REQUIREMENTS]
    assert isinstance(entry.content, Generated) and entry.content.data.startswith(b"# No requirements")


def test_one_pip_run_installs_the_runtimes_and_the_users_requirements():
    environment = make(inputs(requirements=requirement_files("requirements.txt"))).image.environment
    (step,) = environment.steps
    assert [f.bundle_path for f in step.requirements] == ["runtime/requirements.txt", "environment/requirements.txt"]
    assert step.arguments == (
        ("--requirement", "/tmp/bundler/runtime-requirements.txt"),
        ("--requirement", "/tmp/bundler/environment/requirements.txt"),
    )
    assert not environment.vendored and not environment.hashed


def test_hashed_requirements_get_a_run_of_their_own_and_vendoring_installs_offline():
    config = replace(inputs().config, vendor=True)
    environment = make(inputs(config=config, requirements=requirement_files("r.txt", hashed=True))).image.environment
    first, second = environment.steps
    assert [f.bundle_path for f in first.requirements] == ["runtime/requirements.txt"]
    assert [f.bundle_path for f in second.requirements] == ["environment/requirements.txt"]
    assert all(
        s.arguments[0] == ("--no-index", "--find-links", "/tmp/bundler/environment/wheels") for s in (first, second)
    )
    assert environment.hashed and environment.vendored


def test_a_top_file_including_a_requirements_txt_keeps_its_name_and_the_manifest_says_so():
    plan = make(inputs(requirements=requirement_files("prod.txt", "requirements.txt")))
    assert {"environment/prod.txt", "environment/requirements.txt"} <= {e.path for e in plan.files}
    assert plan.manifest.requirements_file == "environment/prod.txt"
    assert plan.image.environment.steps[0].requirements[1].bundle_path == "environment/prod.txt"


def test_the_reference_engine_replaces_the_runtimes_requirements():
    plan = make(inputs(entry=EntryScriptInfo(True, "azureml.contrib.services.aml_request")))
    runtime = {e.path: e for e in plan.files}["runtime/requirements.txt"].content.data
    assert b"azureml-inference-server-http==1.5.1" in runtime and b"gunicorn" not in runtime
    assert plan.image.engine == plan.manifest.engine == "azureml"
    assert plan.image.command == ("python", "-m", "bundler_runtime.reference")
    assert "BUNDLER_MAX_REQUEST_BYTES" not in dict(plan.image.env)


def test_a_raw_http_script_cannot_run_on_the_engine_asked_for():
    config = replace(inputs().config, engine="bundler")
    with pytest.raises(EntryScriptError, match='set \\[server\\] engine = "azureml"'):
        make(inputs(config=config, entry=EntryScriptInfo(True, "azureml.contrib.services")))


def test_model_dir_and_labels_for_one_and_for_several_models():
    one = make(inputs())
    assert dict(one.image.env)["AZUREML_MODEL_DIR"] == "/var/azureml-app/azureml-models/diabetes/1"
    assert ("org.opencontainers.image.version", "1") in one.image.labels
    config = replace(inputs().config, models=(ModelRef("a", 1), ModelRef("b", 2)))
    several = make(inputs(config=config, models=(model("a", 1), model("b", 2, (("w.bin", "b" * 64, 1),)))))
    assert dict(several.image.env)["AZUREML_MODEL_DIR"] == "/var/azureml-app/azureml-models"
    assert dict(several.image.labels)["io.bundler.models"] == "a:1,b:2"
    assert [m.ref for m in several.manifest.models] == ["a:1", "b:2"]


def test_sources_ship_under_the_app_folder_with_their_modes():
    source_dir = NOWHERE / "src"
    config = replace(inputs().config, source_directory=source_dir, entry_script=source_dir / "pkg" / "score.py")
    selection = SourceSelection(
        (
            SourceFile("pkg/score.py", source_dir / "pkg" / "score.py", False),
            SourceFile("run.sh", source_dir / "run.sh", True),
        ),
        ("secret.env",),
    )
    plan = make(inputs(config=config, sources=selection))
    modes = {e.path: e.mode for e in plan.files if e.path.startswith("azureml-app/")}
    assert modes == {"azureml-app/pkg/score.py": layout.FILE_MODE, "azureml-app/run.sh": layout.EXEC_MODE}
    assert plan.image.entry_script == plan.manifest.entry_script == "pkg/score.py"
    assert plan.skipped_secrets == ("secret.env",)


def test_an_entry_script_left_out_by_a_rule_is_refused():
    source_dir = NOWHERE / "src"
    config = replace(inputs().config, source_directory=source_dir, entry_script=source_dir / "score.py")
    with pytest.raises(SourceError, match="left out of the source directory by a rule"):
        make(inputs(config=config, sources=SourceSelection((), ())))


def test_two_inputs_for_one_bundle_path_are_refused():
    runtime = RuntimeFiles(RUNTIME.files + (("requirements.txt", NOWHERE / "x"),), RUNTIME.requirements)
    with pytest.raises(ConfigError, match="would both be written to runtime/requirements.txt"):
        make(inputs(runtime=runtime))


def test_unpinned_requirements_are_reported_unless_vendored():
    unpinned = inputs(requirements=requirement_files("requirements.txt", pinned=False))
    assert make(unpinned).unpinned == ("numpy",)
    assert make(replace(unpinned, config=replace(unpinned.config, vendor=True))).unpinned == ()


def test_the_same_inputs_give_the_same_plan():
    assert make(inputs()) == make(inputs())
