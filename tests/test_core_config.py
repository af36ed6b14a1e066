"""bundler.toml and flags: precedence, relative paths, and errors that name file, key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bundler.config import Flags, load
from bundler.errors import ConfigError
from bundler.registry import ModelRef


@pytest.fixture
def project(tmp_path):
    (tmp_path / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    (tmp_path / "requirements.txt").write_text("numpy\n")
    return tmp_path


def write_config(folder: Path, text: str) -> Path:
    path = folder / "bundler.toml"
    path.write_text(text)
    return path


FULL = """\
models = ["diabetes:1", "scaler"]
[inference]
entry_script = "score.py"
[environment]
requirements = "requirements.txt"
python = "3.10"
[server]
port = 8080
workers = 3
[registry]
address = "docker.io"
username = "me"
password_env = "REG_PASSWORD"
"""


def test_full_file_is_read_relative_to_its_folder(project, tmp_path_factory):
    write_config(project, FULL)
    elsewhere = tmp_path_factory.mktemp("cwd")
    config = load(Flags(config=project / "bundler.toml"), cwd=elsewhere)
    assert config.models == (ModelRef("diabetes", 1), ModelRef("scaler"))
    assert config.entry_script == project / "score.py"
    assert config.requirements == project / "requirements.txt"
    assert config.base_image == "python:3.10-slim"  # derived from python
    assert (config.server.port, config.server.workers) == (8080, 3)
    assert config.registry.password_env == "REG_PASSWORD"


def test_bundler_toml_in_cwd_is_read_by_default_and_flags_override(project):
    write_config(project, FULL)
    (project / "other.py").write_text("def init(): pass\ndef run(d): return d\n")
    config = load(Flags(models=("other:2",), entry_script="other.py", base_image="python:3.12-slim"), cwd=project)
    assert config.models == (ModelRef("other", 2),)
    assert config.entry_script == project / "other.py"
    assert config.base_image == "python:3.12-slim"
    assert config.server.port == 8080  # not overridden


def test_flags_alone_work_without_a_file(project):
    config = load(Flags(models=("m",), entry_script="score.py"), cwd=project)
    assert config.requirements is None and config.base_image == "python:3.11-slim"


def test_entry_script_is_relative_to_source_directory(project):
    (project / "src").mkdir()
    (project / "src" / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    write_config(project, 'models = ["m"]\n[inference]\nentry_script = "score.py"\nsource_directory = "src"\n')
    assert load(Flags(), cwd=project).entry_script == project / "src" / "score.py"


def error_of(project, text: str, **flags) -> str:
    write_config(project, text)
    with pytest.raises(ConfigError) as caught:
        load(Flags(**flags), cwd=project)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unknown_key_names_file_line_and_suggests(project):
    message = error_of(project, 'models = ["m"]\n[inference]\nentry_script = "score.py"\nentry_scirpt = "x"\n')
    assert message.startswith(f"{project / 'bundler.toml'}:4: [inference] entry_scirpt: unknown key")
    assert "did you mean 'entry_script'?" in message


def test_unknown_table_suggests(project):
    assert "did you mean 'server'?" in error_of(project, 'models = ["m"]\n[sever]\nport = 1\n')


def test_syntax_error_has_line(project):
    message = error_of(project, 'models = ["m"\n[inference]\n')
    assert "invalid TOML" in message and "line 2" in message


def test_wrong_type_names_key_and_type(project):
    message = error_of(project, 'models = ["m"]\n[inference]\nentry_script = "score.py"\n[server]\nport = "80"\n')
    assert ":5: [server] port: 'port' must be a whole number, not a string" in message


def test_binary_garbage_is_not_a_traceback(project):
    (project / "bundler.toml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="not a text file"):
        load(Flags(), cwd=project)


@pytest.mark.parametrize("key", ["password", "token", "api_token", "client_secret"])
def test_secrets_in_the_file_are_refused(project, key):
    message = error_of(project, f'models = ["m"]\n[registry]\naddress = "docker.io"\n{key} = "hunter2"\n')
    assert "password_env" in message and "hunter2" not in message


def test_missing_files_are_named(project):
    assert "entry script" in error_of(project, 'models = ["m"]\n[inference]\nentry_script = "nope.py"\n')
    message = error_of(
        project, 'models = ["m"]\n[inference]\nentry_script = "score.py"\n[environment]\nrequirements = "r.txt"\n'
    )
    assert "requirements file" in message and "r.txt" in message
    with pytest.raises(ConfigError, match="config file .*missing.toml not found"):
        load(Flags(config=Path("missing.toml")), cwd=project)


@pytest.mark.parametrize("image", ["python:3.11-slim\nRUN rm -rf /", "UPPER:case", "img:tag with space", "a\\b", 'a"b'])
def test_base_image_must_be_an_image_reference(project, image):
    assert "not an image reference" in error_of(project, 'models = ["m"]\n', entry_script="score.py", base_image=image)


def test_no_model_is_a_service_without_one_but_no_entry_script_is_an_error(project):
    write_config(project, '[inference]\nentry_script = "score.py"\n')
    assert load(Flags(), cwd=project).models == ()  # as on Azure: AZUREML_MODEL_DIR is an empty folder
    assert "no entry script" in error_of(project, 'models = ["m"]\n')


def test_duplicate_model_names_are_refused(project):
    assert "listed twice" in error_of(project, 'models = ["m:1", "m:2"]\n', entry_script="score.py")


def test_registry_may_differ_from_the_base_images(project):
    """[registry] is where the image is pushed; the base image may come from elsewhere."""
    write_config(
        project,
        'models = ["m"]\n[inference]\nentry_script = "score.py"\n'
        '[registry]\naddress = "other.io"\nusername = "u"\npassword_env = "P"\n',
    )
    config = load(Flags(), cwd=project)
    assert (config.registry.address, config.base_image) == ("other.io", "python:3.11-slim")
