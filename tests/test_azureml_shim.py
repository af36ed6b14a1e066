"""bundler.azureml: code written for the Azure ML SDK v1 runs with only its imports changed.

The scripts in tests/azureml_code/ are such code; each runs here as it is, in a project
folder like the ones it was written in, and what it made is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn
from azureml_project import CONDA_FILE, SCORE, make_project

from bundler import api, layout

CODE = Path(__file__).parent / "azureml_code"
PASSWORD = "pw-7c1f0d9e4b"  # a stand-in value for the variable password_env names


@pytest.fixture
def project(tmp_path, monkeypatch):
    folder = make_project(tmp_path / "project")
    monkeypatch.setenv("BUNDLER_HOME", str(tmp_path / "registry"))
    monkeypatch.chdir(folder)
    return folder


def run_code(name: str, *args, env=None, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(CODE / name), *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def register_model(project: Path) -> None:
    api.register(project / "sklearn_regression_model.pkl", "sklearn_regression_model", tags={"area": "diabetes"})


def test_the_snippet_saves_a_bundle_and_reads_the_registry_login(project):
    result = run_code("package_dockerfile.py", env={"ACR_PASSWORD": PASSWORD})
    assert result.stdout.splitlines()[0] == "Registering model sklearn_regression_model"
    assert result.stdout.splitlines()[-3:] == [
        "Address: myregistry.azurecr.io",
        "Username: ml-deployer",
        f"Password: {PASSWORD}",  # read from the variable at the moment it is asked for
    ]
    bundle = project / "imagefiles"
    assert api.verify(bundle).ok
    manifest = layout.read_manifest(bundle)
    assert [m.ref for m in manifest.models] == ["sklearn_regression_model:1"]
    assert (bundle / "environment" / "myenv.yml").read_text() == CONDA_FILE  # the user's file, unchanged
    assert (bundle / "azureml-app" / "score.py").read_text() == SCORE
    model = api.model("sklearn_regression_model")
    assert (model.tags, model.description) == ((("area", "diabetes"),), "Ridge on diabetes")
    # The password was never written: not in the bundle, not in the registry.
    for folder in (bundle, Path(os.environ["BUNDLER_HOME"])):
        for path in folder.rglob("*"):
            assert not path.is_file() or PASSWORD.encode() not in path.read_bytes(), path


def test_the_password_is_none_when_its_variable_is_unset(project):
    env = {key: value for key, value in os.environ.items() if key != "ACR_PASSWORD"}
    result = subprocess.run(
        [sys.executable, str(CODE / "package_dockerfile.py")], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Password: None"


def test_the_same_inputs_make_the_same_bundle_as_the_cli(project, cli):
    run_code("package_dockerfile.py")
    done = cli(
        "save", "cli-bundle", "--model", "sklearn_regression_model:1", "--entry-script", "score.py",
        "--source-dir", ".", "--conda-file", "myenv.yml",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    # Both ship the same source folder, except each other's output folder.
    shipped = layout.read_manifest(project / "imagefiles").files
    from_cli = layout.read_manifest(project / "cli-bundle").files
    assert {p: r for p, r in shipped.items() if "cli-bundle" not in p} == {
        p: r for p, r in from_cli.items() if "imagefiles" not in p
    }


def test_conda_dependencies_create(project):
    register_model(project)
    result = run_code("conda_dependencies_create.py")
    written = (project / "imagefiles-create" / "environment" / "conda_dependencies.yml").read_text()
    assert written in result.stdout  # serialize_to_string is what ships
    assert "- scikit-learn\n" in written and "  - azureml-defaults\n" in written
    assert "- python=3.11\n" in written and "channels:\n- conda-forge\n" in written
    assert api.verify(project / "imagefiles-create").ok


def test_the_older_inference_config_form(project):
    register_model(project)
    result = run_code("old_inference_config.py")
    assert (
        result.stdout.splitlines()[0]
        == "sklearn_regression_model 1 sklearn_regression_model:1 {'area': 'diabetes'} None"
    )
    bundle = project / "imagefiles-old"
    assert (bundle / "environment" / "myenv.yml").read_text() == CONDA_FILE
    assert layout.read_manifest(bundle).entry_script == "score.py"


def test_environment_register_and_get(project):
    result = run_code("environment_round_trip.py")
    lines = result.stdout.splitlines()
    assert lines == [
        "registered: myenv 2",
        "latest: 2 python:3.11-slim",
        f"packages: {sorted(['scikit-learn==' + sklearn.__version__, 'joblib==' + joblib.__version__, 'numpy==' + np.__version__, 'requests'])}",  # noqa: E501
        f"first: {sorted(['scikit-learn==' + sklearn.__version__, 'joblib==' + joblib.__version__, 'numpy==' + np.__version__])}",  # noqa: E501
        "all: ['myenv']",
    ]
    stored = Path(os.environ["BUNDLER_HOME"], "environments", "myenv", "1", "myenv.yml")  # its own name
    assert stored.read_text() == CONDA_FILE  # version 1 was the file as given


def test_local_webservice_deploy_run_delete(project):
    register_model(project)
    port = free_port()
    result = run_code("local_webservice.py", port)
    out = result.stdout
    # No Docker engine answers here: the bundle's server ran in this Python, and the deploy said so.
    assert "Deploying local web service myservice as the bundle's server in this Python" in out
    assert f"scoring uri: http://localhost:{port}/score" in out
    predictions = json.loads(out.split("predictions: ", 1)[1].splitlines()[0])
    model = joblib.load(project / "sklearn_regression_model.pkl")
    expected = model.predict(np.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]))
    assert predictions == pytest.approx(expected.tolist())
    assert "logs: True" in out and out.rstrip().endswith("state: Deleted")
    with pytest.raises(OSError):  # deleted: nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the rest of the SDK's surface, in this process ---------------------------------------


@pytest.fixture
def ws(project):
    from bundler.azureml.core import Workspace

    register_model(project)
    return Workspace.from_config()


def test_workspace_from_config_and_models(ws, project):
    from bundler.azureml.core import Model

    assert ws.name == "diabetes-ws" and ws.home == Path(os.environ["BUNDLER_HOME"])
    api.register(project / "score.py", "sklearn_regression_model")
    assert [m.version for m in Model.list(ws)] == [2, 1]
    assert Model(ws, name="sklearn_regression_model").version == 2  # latest
    assert Model(ws, "sklearn_regression_model", version=1).tags == {"area": "diabetes"}
    assert Model(ws, id="sklearn_regression_model:1").version == 1
    assert {name: m.version for name, m in ws.models.items()} == {"sklearn_regression_model": 2}


def test_workspace_without_config_json_is_local(project, tmp_path):
    from bundler.azureml.core import Workspace

    (project / "config.json").unlink()
    elsewhere = tmp_path / "elsewhere"
    assert Workspace.from_config().name == "local"
    assert Workspace(home=elsewhere).home == elsewhere


def test_get_model_path_copies_checked_files(ws, project, tmp_path, monkeypatch):
    from bundler.azureml.core import Model

    monkeypatch.chdir(tmp_path)
    path = Model.get_model_path("sklearn_regression_model", _workspace=ws)
    assert path == os.path.join("azureml-models", "sklearn_regression_model", "1", "sklearn_regression_model.pkl")
    assert Path(path).read_bytes() == (project / "sklearn_regression_model.pkl").read_bytes()
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "azureml-models"))  # as inside a service
    assert Model.get_model_path("sklearn_regression_model") == str(tmp_path / path)


def test_register_records_framework_as_properties(ws, project):
    from bundler.azureml.core import Model

    model = Model.register(
        ws, "sklearn_regression_model.pkl", "ridge", model_framework=Model.Framework.SCIKITLEARN,
        model_framework_version=sklearn.__version__, properties={"r2": "0.45"},
    )  # fmt: skip
    assert model.properties == {
        "model_framework": "ScikitLearn",
        "model_framework_version": sklearn.__version__,
        "r2": "0.45",
    }
    assert Model(ws, "ridge").model_framework == "ScikitLearn"


@pytest.mark.parametrize(
    "call, named",
    [
        ("from bundler.azureml.core import Dataset", "azureml.core.Dataset"),
        ("from bundler.azureml.core import Experiment", "azureml.core.Experiment"),
        ("Model.profile(ws, 'p', [], None, None)", "Model.profile"),
        ("AciWebservice.deploy_configuration(cpu_cores=1, memory_gb=1)", "AciWebservice.deploy_configuration"),
        ("AksWebservice.deploy_configuration()", "AksWebservice.deploy_configuration"),
        ("InteractiveLoginAuthentication(tenant_id='t')", "InteractiveLoginAuthentication"),
        ("Environment.get(ws, 'AzureML-Minimal')", "Environment.get('AzureML-Minimal')"),
        ("ws.get_default_datastore()", "Workspace.get_default_datastore"),
        ("Workspace.create('w')", "Workspace.create"),
        ("Model(ws, 'sklearn_regression_model').add_tags({'a': 'b'})", "Model.add_tags"),
        ("InferenceConfig(entry_script='score.py', extra_docker_file_steps='x')", "extra_docker_file_steps"),
        ("Model.deploy(ws, 's', [], InferenceConfig(entry_script='score.py'), None)", "Model.deploy with NoneType"),
        ("Model.package(ws, [Model(ws, 'sklearn_regression_model')])", "without an inference_config"),
        ("Environment('e').build(ws)", "Environment.build"),
    ],
)
def test_cloud_only_names_raise_one_clear_error(ws, call, named):
    from bundler.azureml.core import Environment, InferenceConfig, Model, Workspace  # noqa: F401
    from bundler.azureml.core.authentication import InteractiveLoginAuthentication  # noqa: F401
    from bundler.azureml.core.webservice import AciWebservice, AksWebservice  # noqa: F401
    from bundler.azureml.exceptions import NotSupportedError

    with pytest.raises(NotSupportedError) as caught:
        exec(call, globals(), locals())
    message = str(caught.value)
    assert named in message and "is not supported by bundler.azureml: " in message
    assert "\n" not in message and len(message.split(": ", 1)[1]) > 20  # and says what to do instead
    assert isinstance(caught.value, api.BundlerError)  # the CLI's error classes


def test_an_unknown_name_is_an_attribute_error(ws):
    from bundler.azureml.core import Model

    with pytest.raises(AttributeError):
        Model.no_such_method  # noqa: B018
    with pytest.raises(ImportError):
        exec("from bundler.azureml.core import NoSuchThing")


def test_conda_dependencies_keep_an_unchanged_file_byte_for_byte(project):
    from bundler.azureml.core.conda_dependencies import CondaDependencies

    text = "# my comment\n" + CONDA_FILE
    (project / "env.yml").write_text(text)
    dependencies = CondaDependencies("env.yml")
    assert dependencies.serialize_to_string() == text
    assert dependencies.get_python_version() == "3.11"
    dependencies.add_pip_package("requests==2.32.3")
    dependencies.add_conda_package("python=3.12")
    changed = dependencies.serialize_to_string()
    assert "# my comment" not in changed and "- python=3.12\n" in changed and "  - requests==2.32.3\n" in changed
    dependencies.remove_pip_package("requests")
    assert "requests" not in dependencies.serialize_to_string()
    again = CondaDependencies.create(pip_packages=["a==1"], python_version="3.10", channels=["defaults"])
    assert (
        again.serialize_to_string()
        == CondaDependencies.create(
            pip_packages=["a==1"], python_version="3.10", channels=["defaults"]
        ).serialize_to_string()
    )  # the same content is written the same way


def test_a_mistake_ends_in_one_line_naming_the_fix(project):
    (project / "broken.py").write_text(
        "from bundler.azureml.core import Workspace\n"
        "from bundler.azureml.core.model import Model\n"
        "Model(Workspace.from_config(), 'nothing-here')\n"
    )
    result = subprocess.run([sys.executable, "broken.py"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "ModelNotFound: model 'nothing-here' is not registered" in result.stderr.splitlines()[-1]


def test_package_with_a_missing_entry_script_fails_in_wait_for_creation(ws, project):
    from bundler.azureml.core import InferenceConfig, Model

    package = Model.package(ws, [Model(ws, "sklearn_regression_model")], InferenceConfig(entry_script="nope.py"))
    with pytest.raises(api.InputError, match="nope.py"):
        package.wait_for_creation()
    assert package.state == "Failed"
    shutil.rmtree(project / "imagefiles", ignore_errors=True)


def test_an_image_package_builds_names_and_logs(ws, engine_bin, capsys):
    from fake_engine import calls

    from bundler.azureml.core import Environment, InferenceConfig, Model

    env = Environment.from_conda_specification("myenv", "myenv.yml")
    config = InferenceConfig(entry_script="score.py", environment=env)
    model = Model(ws, "sklearn_regression_model")
    package = Model.package(ws, [model], config, image_name="diabetes-svc", image_label="v2")
    package.wait_for_creation(show_output=True)
    assert (package.state, package.location) == ("Succeeded", "diabetes-svc:v2")
    build = [c["argv"] for c in calls(engine_bin) if c["argv"][0] == "build"]
    assert len(build) == 1 and build[0][:5] == ["build", "--format", "docker", "--tag", "diabetes-svc:v2"]
    assert "built image diabetes-svc:v2 with podman" in package.get_logs()
    assert package.pull() == "diabetes-svc:v2"
    assert capsys.readouterr().out.splitlines()[-1] == "Image is local: diabetes-svc:v2"
    default = Model.package(ws, [model], config)
    default.wait_for_creation()
    assert default.location == "sklearn_regression_model:1"  # the first model's name and version


def test_a_dockerfile_package_is_not_pulled(ws):
    from bundler.azureml.core import InferenceConfig, Model
    from bundler.azureml.exceptions import NotSupportedError

    package = Model.package(
        ws, [Model(ws, "sklearn_regression_model")], InferenceConfig(entry_script="score.py"), generate_dockerfile=True
    )
    with pytest.raises(NotSupportedError, match="package.save"):
        package.pull()


def test_every_refused_name_is_documented_and_refused(ws):
    """docs/azureml-migration.md lists each name the shim refuses; each one raises."""
    import bundler.azureml.core as core
    from bundler.azureml.core import authentication, conda_dependencies, environment, model, package, webservice
    from bundler.azureml.core import workspace as workspace_module
    from bundler.azureml.exceptions import NotSupportedError

    documented = (Path(__file__).parent.parent / "docs" / "azureml-migration.md").read_text()
    classes = [
        workspace_module.Workspace, model.Model, environment.Environment, environment.DockerSection,
        conda_dependencies.CondaDependencies, package.ModelPackage, webservice.LocalWebservice, webservice.Webservice,
    ]  # fmt: skip
    checked = 0
    for cls in classes:
        for name in cls.REFUSED:
            assert name in documented, f"{cls.__name__}.{name} is refused but not documented"
            with pytest.raises(NotSupportedError):
                getattr(cls, name)
            checked += 1
    for name in core.REFUSED:
        assert name in documented
        with pytest.raises(NotSupportedError):
            getattr(core, name)
        checked += 1
    for name in ("InteractiveLoginAuthentication", "ServicePrincipalAuthentication", "MsiAuthentication"):
        assert name in documented
        with pytest.raises(NotSupportedError):
            getattr(authentication, name)()
    assert checked > 40


# -- what an adversarial review found ------------------------------------------------------


def test_a_service_stops_when_the_python_that_deployed_it_exits(project):
    register_model(project)
    port = free_port()
    script = project / "deploy_and_leave.py"
    script.write_text((CODE / "local_webservice.py").read_text().split('print("scoring uri:"')[0])
    result = subprocess.run([sys.executable, str(script), str(port)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Local webservice is running" in result.stdout  # it ran, and the script ended without delete()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_port_in_use_is_refused_not_mistaken_for_the_service(ws, project):
    from bundler.azureml.core import Environment, InferenceConfig, LocalWebservice, Model
    from bundler.azureml.exceptions import WebserviceException

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = InferenceConfig(
            entry_script="score.py", environment=Environment.from_conda_specification("e", "myenv.yml")
        )
        with pytest.raises(WebserviceException, match=f"port {taken.getsockname()[1]} is in use"):
            Model.deploy(
                ws, "svc", [Model(ws, "sklearn_regression_model")], config,
                LocalWebservice.deploy_configuration(port=taken.getsockname()[1]),
            )  # fmt: skip


def test_package_save_keeps_hand_edits_unless_forced(ws, project):
    from bundler.azureml.core import InferenceConfig, Model

    config = InferenceConfig(entry_script="score.py")
    package = Model.package(ws, [Model(ws, "sklearn_regression_model")], config, generate_dockerfile=True)
    package.save("out")
    with open(project / "out" / "Dockerfile", "a") as dockerfile:
        dockerfile.write("# my edit\n")
    with pytest.raises(api.OutputError, match="hand edits"):
        package.save("out")
    assert "# my edit" in (project / "out" / "Dockerfile").read_text()
    package.save("out", force=True)
    assert "# my edit" not in (project / "out" / "Dockerfile").read_text()


def test_the_snippet_twice_never_ships_the_first_bundle(project):
    first = run_code("package_dockerfile.py").stdout.splitlines()[1]
    second = run_code("package_dockerfile.py").stdout.splitlines()[1]
    files = layout.read_manifest(project / "imagefiles").files
    assert not [path for path in files if path.startswith("azureml-app/imagefiles")]
    assert first.split(" (")[0] == second.split(" (")[0]  # "saved N files", the same N both times
    assert api.verify(project / "imagefiles").ok


def test_environment_register_refuses_credentials_and_stores_nothing(ws, project):
    from bundler.azureml.core import Environment
    from bundler.azureml.core.conda_dependencies import CondaDependencies

    (project / "req.txt").write_text("--extra-index-url https://deploy:S3cretTok3n@pypi.corp.example/simple\nnumpy\n")
    with pytest.raises(api.InputError, match="credential"):
        Environment.from_pip_requirements("creds", "req.txt").register(ws)
    env = Environment("creds2")
    env.python.conda_dependencies = CondaDependencies.create(
        pip_packages=["numpy"], pip_indexurl="https://deploy:S3cretTok3n@pypi.corp.example/simple"
    )
    with pytest.raises(api.InputError, match="credential"):
        env.register(ws)
    home = Path(os.environ["BUNDLER_HOME"])
    assert not [p for p in home.rglob("*") if p.is_file() and b"S3cretTok3n" in p.read_bytes()]


@pytest.mark.parametrize(
    "call, error",
    [
        ("Model(ws, '../../evil')", "invalid model name"),
        ("Model.get_model_path('../etc', _workspace=ws)", "invalid model name"),
        ("Model(ws, 'sklearn_regression_model', 1)", "pass version=1"),
        ("Model(ws, 'sklearn_regression_model', version='abc')", "whole number"),
        ("Model.package(ws, Model(ws, 'sklearn_regression_model'), InferenceConfig(entry_script='score.py'))", "list"),
        ("Environment.get(ws, None)", "the name is text"),
        ("CondaDependencies.create(conda_packages='numpy')", "a list of text"),
        ("api.register('sklearn_regression_model.pkl', 'm', description=5)", "description must be text"),
        ("api.register('sklearn_regression_model.pkl', 'm', tags=['a'])", "a mapping of text"),
        ("api.register(None, 'm')", "must be a path"),
        ("api.model(5)", "a model reference is text"),
        ("api.save('o', {'models': ['m']})", "bundler.api.Inputs"),
        ("api.Inputs(models='sklearn_regression_model')", "a list of text"),
        ("api.Inputs(vendor='no')", "True, False or None"),
        ("api.Inputs(entry_script=5)", "a path or text"),
        ("Workspace.from_config(path='/nonexistent/config.json')", "no workspace config.json"),
    ],
)
def test_wrong_arguments_from_python_are_one_clear_bundler_error(ws, call, error):
    from bundler.azureml.core import CondaDependencies, Environment, InferenceConfig, Model, Workspace  # noqa: F401

    with pytest.raises(api.BundlerError, match=error):
        exec(call, globals(), locals())


def test_sdk_shapes_the_review_found(ws, project):
    from bundler.azureml.core import Environment, Model

    env = Environment(name="service_env")
    env.python.conda_dependencies.add_pip_package("scikit-learn")  # as in the SDK: a conda file to add to
    assert "  - scikit-learn\n" in env.python.conda_dependencies.serialize_to_string()
    # The SDK's positional order: tags, properties, description, datasets, then model_framework.
    model = Model.register(ws, "sklearn_regression_model.pkl", "ridge", {"a": "b"}, None, "d", None, "ScikitLearn")
    assert (model.tags, model.description, model.model_framework) == ({"a": "b"}, "d", "ScikitLearn")


def test_the_workspace_config_file_is_the_packages(ws, project):
    from bundler.azureml.core import InferenceConfig, Model, Workspace

    (project / "other.toml").write_text(
        '[registry]\naddress = "other.example.com"\nusername = "robot$ci"\npassword_env = "OTHER_PASSWORD"\n'
    )
    other = Workspace.from_config(config="other.toml")
    package = Model.package(other, [Model(other, "sklearn_regression_model")], InferenceConfig(entry_script="score.py"))
    package.save("out")
    login = json.loads((project / "out" / "registry-login.json").read_text())
    pushed = [r for r in login["registries"] if r["address"] == "other.example.com"][0]
    assert pushed["login"] == "docker login other.example.com --username 'robot$ci' --password-stdin"  # quoted
    assert package.get_container_registry().address == "other.example.com"


def test_get_model_path_in_a_one_model_service(tmp_path, monkeypatch):
    from bundler.azureml.core import Model

    folder = tmp_path / "azureml-models" / "sklearn_regression_model" / "1"
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(b"m")
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(folder))  # one model: the folder of its version
    assert Model.get_model_path("sklearn_regression_model") == str(folder / "model.pkl")
    assert Model.get_model_path("sklearn_regression_model", version=1) == str(folder / "model.pkl")
