"""Hardening, security (issue "Hardening", items 1-4): what an adversarial review planted.

1. cleanup never follows a link, never opens up or removes what another user or a live save owns;
2. credentials in requirement URLs (tokens as user names, in query strings) and included
   files that are links leaving the folder never ship;
3. a model registry inside a source folder never ships;
4. credential files, keys found by content, and secrets written inside shipping text files.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from requires import require_root

from bundler import emit

SECRET = "hunter2-S3CR3T-0f1e"
GOOD_SCRIPT = "def init():\n    pass\ndef run(raw):\n    return raw\n"
PEM_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA" + "A" * 60 + "\n-----END RSA PRIVATE KEY-----\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def everything_in(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def save(cli, *extra, out="out"):
    return cli("save", out, "--model", "m", "--entry-script", "score.py", *extra)


def save_sources(folder: Path, cli, monkeypatch, files: dict, *extra):
    """Save `folder/src` (score.py plus `files`) with model m, from `folder`."""
    write(folder / "src" / "score.py", GOOD_SCRIPT)
    for rel, text in files.items():
        write(folder / "src" / rel, text)
    write(folder / "m.bin", "m")
    monkeypatch.chdir(folder)
    assert cli("register", "m.bin", "--name", "m").exit_code == 0
    return cli("save", "out", "--model", "m", "--source-dir", "src", "--entry-script", "score.py", *extra)


# -- 1. cleanup follows no link --------------------------------------------------------------


def test_a_planted_link_named_like_a_leftover_is_never_followed(project, cli, tmp_path_factory):
    victim = tmp_path_factory.mktemp("victim")
    write(victim / "sub" / "precious.txt", "keep me")
    os.chmod(victim / "sub", 0o700)
    os.chmod(victim, 0o700)
    planted = project / f"{emit.staging_prefix(project / 'out')}planted"
    os.symlink(victim, planted)

    assert save(cli).exit_code == 0
    assert planted.is_symlink()  # left alone: not bundler's
    assert stat.S_IMODE(victim.stat().st_mode) == 0o700 and stat.S_IMODE((victim / "sub").stat().st_mode) == 0o700
    assert (victim / "sub" / "precious.txt").read_text() == "keep me"


def test_a_leftover_another_user_owns_is_left_alone(project, cli):
    require_root("making a folder another user owns needs root")
    theirs = project / f"{emit.staging_prefix(project / 'out')}theirs"
    write(theirs / "f", "theirs")
    os.chown(theirs, 65534, 65534)
    assert save(cli).exit_code == 0
    assert (theirs / "f").read_text() == "theirs"


def test_a_stale_leftover_of_this_user_is_removed_but_a_live_save_is_not(project, cli):
    from bundler import leftovers

    prefix = emit.staging_prefix(project / "out")
    stale = write(project / f"{prefix}stale" / "half.bin", "x").parent
    live = write(project / f"{prefix}live" / "half.bin", "x").parent
    fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert leftovers.lock(fd)  # as a save in progress holds it
        assert save(cli).exit_code == 0
        assert not stale.exists() and (live / "half.bin").exists()
    finally:
        os.close(fd)


def test_staging_names_are_fixed_length_and_unpredictable():
    a, b = Path("/x/out"), Path("/x/" + "o" * 250)
    assert emit.staging_prefix(a) != emit.staging_prefix(Path("/x/out-b"))
    assert len(emit.staging_prefix(a)) == len(emit.staging_prefix(b)) < 40


def test_force_removes_an_old_bundle_holding_a_link_without_following_it(project, cli, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    write(outside / "data.txt", "outside data")
    os.chmod(outside, 0o500)
    assert save(cli).exit_code == 0
    os.symlink(outside, project / "out" / "azureml-app" / "elsewhere")  # a hand edit: a link to a folder
    assert save(cli, "--force").exit_code == 0
    assert (outside / "data.txt").read_text() == "outside data" and stat.S_IMODE(outside.stat().st_mode) == 0o500
    assert not (project / "out" / "azureml-app" / "elsewhere").exists()


def test_a_link_planted_in_the_registrys_tmp_is_not_followed(tmp_path, cli):
    victim = write(tmp_path / "victim" / "keep.txt", "keep").parent
    home = Path(os.environ["BUNDLER_HOME"])
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    os.symlink(victim, home / "tmp" / "blob-planted")
    write(tmp_path / "m.bin", "weights")
    assert cli("register", str(tmp_path / "m.bin"), "--name", "m").exit_code == 0
    assert (victim / "keep.txt").read_text() == "keep"


# -- 2. credentials in requirements --------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        f"--index-url https://{SECRET}:@pypi.example/simple",
        f"pkg @ https://files.example/pkg.whl?access_token={SECRET}",
        f"pkg @ https://bucket.s3.amazonaws.com/pkg.whl?X-Amz-Algorithm=AWS4&X-Amz-Signature={SECRET}",
        f"pkg @ https://acct.blob.core.windows.net/w/pkg.whl?sv=2022-11-02&sr=b&sig={SECRET}",
    ],
)
def test_a_token_in_a_requirement_url_is_refused_masked(project, cli, line):
    write(project / "requirements.txt", line + "\n")
    result = save(cli, "--requirements", "requirements.txt")
    assert result.exit_code == 2 and "requirements.txt:1: a URL holds a credential" in result.output
    assert SECRET not in result.output and "${VARIABLE}" in result.output and not (project / "out").exists()


def test_an_included_file_linking_outside_the_folder_is_refused(project, cli, tmp_path_factory):
    netrc = write(tmp_path_factory.mktemp("home") / ".netrc", f"machine pypi.example login me password {SECRET}\n")
    write(project / "env" / "requirements.txt", "-r base.txt\nsix==1.17.0\n")
    os.symlink(netrc, project / "env" / "base.txt")
    result = save(cli, "--requirements", "env/requirements.txt")
    assert result.exit_code == 2
    assert "includes base.txt, a link to" in result.output and "copy the file in" in result.output
    assert not (project / "out").exists()


def test_an_included_link_inside_the_folder_still_ships(project, cli):
    write(project / "env" / "pins" / "real.txt", "six==1.17.0\n")
    write(project / "env" / "requirements.txt", "-r base.txt\n")
    os.symlink("pins/real.txt", project / "env" / "base.txt")
    assert save(cli, "--requirements", "env/requirements.txt").exit_code == 0
    assert (project / "out" / "environment" / "base.txt").read_text() == "six==1.17.0\n"


# -- 3. the registry never ships -----------------------------------------------------------


def test_a_registry_inside_the_source_folder_never_ships(tmp_path):
    import subprocess
    import sys

    project = tmp_path / "proj"
    write(project / "score.py", GOOD_SCRIPT)
    write(project / "model.bin", SECRET)
    env = {**os.environ, "BUNDLER_HOME": str(project / ".bundler")}

    def bundler(*args):
        return subprocess.run(
            [sys.executable, "-m", "bundler", *args], cwd=project, env=env, capture_output=True, text=True
        )

    assert bundler("register", "model.bin", "--name", "m").returncode == 0  # the registry in use, inside
    assert bundler("register", "model.bin", "--name", "x", "--home", "old-registry").returncode == 0  # another one
    (project / "model.bin").unlink()  # the model reaches the bundle only as the model
    done = bundler("save", str(tmp_path / "out"), "--model", "m", "--source-dir", ".", "--entry-script", "score.py")
    assert done.returncode == 0, done.stderr
    shipped = sorted(
        p.relative_to(tmp_path / "out" / "azureml-app").as_posix()
        for p in (tmp_path / "out" / "azureml-app").rglob("*")
        if p.is_file()
    )
    assert shipped == ["score.py"]
    assert "skipped: old-registry/ (a bundler model registry" in done.stdout
    assert everything_in(tmp_path / "out").count(SECRET.encode()) == 1  # the model file itself, once


def test_registering_a_folder_holding_the_registry_leaves_it_out(tmp_path, cli):
    folder = tmp_path / "proj"
    write(folder / "weights.bin", "w")
    home = Path(os.environ["BUNDLER_HOME"])
    assert cli("register", str(folder), "--name", "first").exit_code == 0
    write(folder / "reg" / "blobs" / "sha256" / "ab" / "x", SECRET)
    (folder / "reg" / "models").mkdir()
    result = cli("register", str(folder), "--name", "second")
    assert result.exit_code == 0 and "skipped: proj/reg/ (a bundler model registry" in result.output
    record = json.loads((home / "models" / "second" / "1.json").read_text())
    assert [f["path"] for f in record["files"]] == ["proj/weights.bin"]


# -- 4. credential files, keys by content, secrets in shipping text -------------------------


# fmt: off
@pytest.mark.parametrize(
    "rel",
    ["kubeconfig", ".kube/config", ".envrc", "prod.env", ".pgpass", ".s3cfg", ".vault-token", "_netrc", "keys/me.ppk",
     "java/app.jks", "tls/server.keystore", ".databrickscfg", ".huggingface/token", "kaggle.json",
     ".streamlit/secrets.toml", "config/secrets.yaml", "pip.conf", "infra/prod.tfvars"],
)
# fmt: on
def test_more_credential_files_are_left_out_and_named(tmp_path, cli, monkeypatch, rel):
    result = save_sources(tmp_path, cli, monkeypatch, {rel: f"secret={SECRET}\n"})
    reported = rel.split("/")[0] + "/" if rel.startswith((".kube/", ".huggingface/")) else rel  # a folder, once
    assert result.exit_code == 0 and f"skipped: {reported} " in result.output
    assert SECRET.encode() not in everything_in(tmp_path / "out")


@pytest.mark.parametrize(
    "rel, text",
    [
        ("notes/deploy.txt", PEM_KEY),
        (
            "settings/gcp.json",
            json.dumps(
                {"type": "service_account", "project_id": "p", "private_key": PEM_KEY, "client_email": "x@p.iam"}
            ),
        ),
        ("keys/putty_key", "PuTTY-User-Key-File-3: ssh-ed25519\nPrivate-Lines: 1\nAAAA\n"),
    ],
)
def test_keys_are_found_by_content_whatever_their_name(tmp_path, cli, monkeypatch, rel, text):
    result = save_sources(tmp_path, cli, monkeypatch, {rel: text, "settings/plain.json": '{"type": "config"}'})
    assert result.exit_code == 0 and f"skipped: {rel}" in result.output
    assert not (tmp_path / "out" / "azureml-app" / rel).exists()
    assert (tmp_path / "out" / "azureml-app" / "settings" / "plain.json").exists()


AWS_ID, AWS_SECRET = "AKIA" + "Q" * 16, "wJalrXUtnFEMI/K7MDENG/bPxRfiCY" + "EXAMPLEKEY"
IN_TEXT = [
    ("a GitHub token", f'TOKEN = "ghp_{"a1B2" * 9}"\n'),
    ("a GitHub token", f'TOKEN = "github_pat_{"x" * 22}_{"y" * 59}"\n'),
    ("an AWS access key with its secret", f'ID = "{AWS_ID}"\nKEY = "{AWS_SECRET}"\n'),
    (
        "an Azure storage account key",
        f'CONN = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey={"Zm9v" * 22}==;EndpointSuffix=x"\n',
    ),
    ("a private key block", f'KEY = """{PEM_KEY}"""\n'),
]


@pytest.mark.parametrize("what, text", IN_TEXT, ids=[f"{i}-{w}" for i, (w, _) in enumerate(IN_TEXT)])
def test_a_secret_written_in_the_entry_script_refuses_the_save_with_file_and_line(project, cli, what, text):
    write(project / "score.py", "import os\n" + text + GOOD_SCRIPT)
    result = save(cli)
    assert result.exit_code == 2, result.output
    assert f"score.py:2: {what}, in a file that would ship" in result.output
    assert "--allow-secret" in result.output and not (project / "out").exists()


def test_a_secret_in_a_source_file_or_a_requirements_comment_refuses_too(tmp_path, cli, monkeypatch):
    result = save_sources(tmp_path, cli, monkeypatch, {"lib/client.py": "\n\n" + IN_TEXT[0][1]})
    assert result.exit_code == 2 and "client.py:3: a GitHub token" in result.output
    write(tmp_path / "requirements.txt", "# token: " + IN_TEXT[0][1])
    clean = {"lib/client.py": "X = 1\n"}
    result = save_sources(tmp_path, cli, monkeypatch, clean, "--requirements", "requirements.txt")
    assert result.exit_code == 2 and "requirements.txt:1: a GitHub token" in result.output


def test_a_file_the_user_allows_ships_by_flag_or_by_config(tmp_path, cli, monkeypatch):
    write(tmp_path / "src" / "score.py", GOOD_SCRIPT)
    write(tmp_path / "src" / "tests" / "fixture.py", IN_TEXT[2][1])  # a documented example key
    write(tmp_path / "src" / "certs" / "ca.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    write(tmp_path / "m.bin", "m")
    monkeypatch.chdir(tmp_path)
    cli("register", "m.bin", "--name", "m")
    args = ("save", "out", "--model", "m", "--source-dir", "src", "--entry-script", "score.py")
    assert cli(*args).exit_code == 2
    result = cli(*args, "--allow-secret", "src/tests/fixture.py", "--allow-secret", "src/certs")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "azureml-app" / "certs" / "ca.pem").exists()
    write(tmp_path / "bundler.toml", '[secrets]\nallow = ["src/tests/fixture.py"]\n')
    result = cli(*args, "--force")
    assert result.exit_code == 0 and "skipped: certs/ca.pem" in result.output


@pytest.mark.parametrize("name, text", [(".env", f"TOKEN={SECRET}\n"), ("weights.bin", PEM_KEY)])
def test_registering_a_secret_file_is_refused(tmp_path, cli, name, text):
    write(tmp_path / name, text)
    result = cli("register", str(tmp_path / name), "--name", "m")
    assert result.exit_code == 2 and "looks like a secret" in result.output
    assert not (Path(os.environ["BUNDLER_HOME"]) / "models" / "m").exists()


def test_ordinary_text_is_not_taken_for_a_secret(project, cli):
    write(
        project / "score.py",
        'SHA = "' + "a" * 40 + '"\nACCOUNT = "AKIA-docs-example"\nKEY_NAME = "AccountKey"\n' + GOOD_SCRIPT,
    )
    assert save(cli).exit_code == 0


# -- found by a second review -----------------------------------------------------------------


def test_a_google_user_credentials_json_is_a_key(tmp_path, cli, monkeypatch):
    adc = json.dumps({"type": "authorized_user", "client_id": "x", "refresh_token": SECRET})
    result = save_sources(tmp_path, cli, monkeypatch, {"gcloud/adc.json": adc})
    assert result.exit_code == 0 and "skipped: gcloud/adc.json" in result.output


@pytest.mark.parametrize(
    "name, text, what",
    [
        ("settings.py", 'HF = "hf_' + "aBcD" * 9 + '"\n', "a Hugging Face token"),
        ("settings.py", 'KEY = "sk-proj-' + "A1b2" * 12 + '"\n', "an OpenAI API key"),
        ("settings.py", 'DB = "postgresql://ml:Pa55word@db/prod"\n', "a password in a URL"),
        ("legacy.py", b"# Andr\xe9\nT = 'ghp_" + b"a1B2" * 9 + b"'\n", "a GitHub token"),
        ("explore.ipynb", '{"cells": [' + '"x", ' * 600_000 + '"ghp_' + "a1B2" * 9 + '"]}\n', "a GitHub token"),
    ],
    ids=["hf", "openai", "db-url", "latin-1", "large-notebook"],
)
def test_more_secrets_in_source_files_refuse_the_save(tmp_path, cli, monkeypatch, name, text, what):
    result = save_sources(tmp_path, cli, monkeypatch, {name: text})
    assert result.exit_code == 2 and f"{name}:" in result.output and what in result.output


def test_a_secret_in_the_dockerfile_template_refuses_the_save(project, cli):
    write(
        project / "t.jinja",
        '{% extends "Dockerfile.jinja" %}\n{% block extra_setup %}\n'
        'ENV GITHUB_TOKEN="ghp_' + "a1B2" * 9 + '"\n{% endblock %}\n',
    )
    write(project / "bundler.toml", '[dockerfile]\ntemplate = "t.jinja"\n')
    result = save(cli)
    assert result.exit_code == 2 and "t.jinja:3: a GitHub token" in result.output


def test_placeholders_in_urls_are_not_secrets(project, cli):
    write(
        project / "score.py",
        'DB = "postgresql://user:password@localhost/db"\nU = f"https://{user}:{pw}@h"\n' + GOOD_SCRIPT,
    )
    assert save(cli).exit_code == 0


def test_a_parent_anyone_can_rename_in_cannot_redirect_what_save_writes(project, cli, monkeypatch, tmp_path_factory):
    """Whoever renames the staging folder mid-save and puts a link in its place must not make
    save write or chmod anything through that link: files are made relative to the folder's
    descriptor, not its name."""
    import bundler.fill as fill

    victim = tmp_path_factory.mktemp("victim")
    precious = write(victim / "azureml-app" / "score.py", "theirs")
    os.chmod(precious, 0o600)
    real, done = fill._write_entry, []

    def swapped_midway(folders, entry, update=None):
        if not done:
            staging = next(p for p in project.iterdir() if p.name.startswith(emit.staging_prefix(project / "out")))
            os.rename(staging, project / "moved-away")
            os.symlink(victim, staging)
            done.append(staging)
        return real(folders, entry, update)

    monkeypatch.setattr(fill, "_write_entry", swapped_midway)
    save(cli)
    assert precious.read_text() == "theirs" and stat.S_IMODE(precious.stat().st_mode) == 0o600
    assert (project / "moved-away" / "azureml-app" / "score.py").read_text() == GOOD_SCRIPT  # written where it was
