"""bundler.api, the Python API under the CLI, and the CLI's --json documents, login and push.

The engine here is a recording stand-in for docker/podman (no engine runs on a test
machine): these tests check what bundler asks of it and how it reads the answers. The real
registry flow, with a real engine and registry, is tests/containers/test_registry_flow.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_engine import DIGEST, calls

from bundler import api, layout


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    (tmp_path / "m.bin").write_bytes(b"weights")
    monkeypatch.setenv("BUNDLER_HOME", str(tmp_path / "registry"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def saved_with_registry(project: Path) -> Path:
    (project / "bundler.toml").write_text(
        'models = ["fraud"]\n[inference]\nentry_script = "score.py"\n'
        '[registry]\naddress = "registry.example:5000"\nusername = "ci"\npassword_env = "PUSH_PASSWORD"\n'
    )
    api.register("m.bin", "fraud")
    return api.save("imagefiles").path


def bundler_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "bundler", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


# -- the API --------------------------------------------------------------------------


def test_register_resolve_save_verify(project):
    done = api.register("m.bin", "fraud", description="a model", tags={"team": "risk"})
    assert done.version.ref == "fraud:1"
    assert api.models() == (api.ModelSummary("fraud", (1,)),)
    assert api.model("fraud").to_json()["files"] == [
        {"path": "m.bin", "sha256": done.version.files[0].sha256, "size": 7}
    ]
    saved = api.save("out", api.Inputs(models=("fraud:1",), entry_script="score.py"))
    assert saved.path == project / "out" and saved.to_json()["models"] == ["fraud:1"]
    assert api.verify("out").ok
    (project / "out" / "azureml-app" / "score.py").write_text("edited")
    report = api.verify("out")
    assert report.to_json() == {"ok": False, "modified": ["azureml-app/score.py"], "missing": [], "extra": []}
    against = api.verify("out", against=api.Inputs(models=("fraud:1",), entry_script="score.py"))
    assert against.modified == ("azureml-app/score.py",)


def test_errors_are_the_clis_classes(project):
    with pytest.raises(api.ModelNotFound, match="register it with"):
        api.model("nothing")
    with pytest.raises(api.InputError):
        api.register("m.bin", "bad name")
    with pytest.raises(api.ConfigError):
        api.save("out", api.Inputs(models=("x",)))
    with pytest.raises(api.InputError, match="keys and values must be text"):
        api.register("m.bin", "fraud", tags={"n": 1})


def test_the_api_is_typed_and_lists_its_names():
    import inspect

    for name in api.__all__:
        assert getattr(api, name) is not None, name
    for function in (api.register, api.save, api.verify, api.build, api.push, api.login, api.model, api.models):
        signature = inspect.signature(function)
        assert signature.return_annotation is not inspect.Signature.empty, function.__name__
        assert function.__doc__, function.__name__


# -- --json ------------------------------------------------------------------------------


def test_json_documents_are_what_the_api_returns(project):
    api.register("m.bin", "fraud", tags={"team": "risk"})
    listed = json.loads(bundler_cli("models", "list", "--json").stdout)
    assert listed == {"models": [summary.to_json() for summary in api.models()]}
    shown = json.loads(bundler_cli("models", "show", "fraud:1", "--json").stdout)
    assert shown == api.model("fraud:1").to_json() and shown["tags"] == {"team": "risk"}
    saved = bundler_cli("save", "out", "--model", "fraud", "--entry-script", "score.py", "--json")
    document = json.loads(saved.stdout)  # stdout is the document alone
    assert document["path"] == str(project / "out") and document["image"] == "fraud"
    assert document["files"] == len(layout.read_manifest(project / "out").files) + 1
    verified = json.loads(bundler_cli("verify", "out", "--json").stdout)
    assert verified == {
        "bundle": "out",
        "against": "bundle.json",
        "ok": True,
        "modified": [],
        "missing": [],
        "extra": [],
    }


def test_verify_json_still_fails_when_files_differ(project):
    api.register("m.bin", "fraud")
    api.save("out", api.Inputs(models=("fraud",), entry_script="score.py"))
    (project / "out" / "extra.txt").write_text("x")
    result = bundler_cli("verify", "out", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["extra"] == ["extra.txt"]
    assert result.stderr == "bundler: error: out: 1 entries differ from bundle.json\n"


# -- login, build --push, push -------------------------------------------------------------


def test_login_gives_the_password_on_stdin_only(project, engine_bin):
    bundle = saved_with_registry(project)
    secret = "pw-2f1e8c"
    result = bundler_cli("login", str(bundle), env={"PUSH_PASSWORD": secret, "FAKE_GOOD_PASSWORD": secret})
    assert result.returncode == 0, result.stderr
    assert result.stdout == "logged in: registry.example:5000\n"
    login = [c for c in calls(engine_bin) if c["argv"][0] == "login"]
    assert login == [
        {"argv": ["login", "registry.example:5000", "--username", "ci", "--password-stdin"], "stdin": secret}
    ]
    assert all(secret not in " ".join(c["argv"]) for c in calls(engine_bin))


def test_login_failures_are_one_line(project, engine_bin):
    bundle = saved_with_registry(project)
    wrong = bundler_cli("login", str(bundle), env={"PUSH_PASSWORD": "wrong", "FAKE_GOOD_PASSWORD": "right"})
    assert wrong.returncode == 1
    assert wrong.stderr == (
        "bundler: error: podman login to registry.example:5000 as ci failed: Error: logging in: invalid "
        "username/password; check the user name and the password in its variable\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PUSH_PASSWORD"}
    unset = subprocess.run(
        [sys.executable, "-m", "bundler", "login", str(bundle)], capture_output=True, text=True, env=env
    )
    assert unset.returncode == 2
    assert unset.stderr.startswith("bundler: error: set PUSH_PASSWORD to the registry's password")
    assert len(unset.stderr.splitlines()) == 1


def test_build_push_with_podman_prints_the_digest(project, engine_bin):
    bundle = saved_with_registry(project)
    result = bundler_cli("build", "--push", str(bundle))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "built image: fraud",
        "pushed: registry.example:5000/fraud:1",
        f"digest: {DIGEST}",
        f"pull it as: registry.example:5000/fraud@{DIGEST}",
        "deploy it: bundler deploy-manifest imagefiles --image "
        f"registry.example:5000/fraud@{DIGEST} | kubectl apply -f -",
    ]
    argv = [c["argv"] for c in calls(engine_bin) if c["argv"][0] != "info"]
    assert argv[0] == ["build", "--format", "docker", "--tag", "fraud", str(bundle)]
    assert argv[2] == ["tag", "fraud", "registry.example:5000/fraud:1"]
    assert argv[3][:2] == ["push", "--digestfile"] and argv[3][-1] == "registry.example:5000/fraud:1"


def test_push_with_docker_reads_the_repo_digest_and_prints_json(project, engine_bin):
    bundle = saved_with_registry(project)
    result = bundler_cli(
        "push", str(bundle), "--to", "other.example/team/fraud:7", "--json", env={"FAKE_DOCKER_UP": "1"}
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "reference": "other.example/team/fraud:7",
        "digest": DIGEST,
        "pinned": f"other.example/team/fraud@{DIGEST}",
    }
    assert ["push", "other.example/team/fraud:7"] in [c["argv"] for c in calls(engine_bin)]


def test_push_needs_a_target_and_an_image(project, engine_bin):
    api.register("m.bin", "fraud")
    api.save("plain", api.Inputs(models=("fraud",), entry_script="score.py"))
    result = bundler_cli("push", "plain")
    assert result.returncode == 2
    assert "names no registry to push to; add [registry]" in result.stderr
    missing = bundler_cli("push", "plain", "--tag", "missing", "--to", "r.example/x:1")
    assert missing.returncode == 2
    assert missing.stderr == "bundler: error: no image missing here to push; build it first: bundler build plain\n"


def test_build_json_keeps_stdout_for_the_document(project, engine_bin):
    bundle = saved_with_registry(project)
    result = bundler_cli("build", str(bundle), "--json")
    assert json.loads(result.stdout) == {"image": "fraud", "engine": "podman", "pushed": None}
