"""Walking a source or model folder: secrets behind links and odd names, loops, unreadable folders,
and the name a registered folder keeps."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bundler import sources
from bundler.errors import RegistryError, SourceError
from bundler.registry import ModelRef, Registry

SECRET = "AWS_SECRET=do-not-ship-91c2"
SCRIPT = "def init():\n    pass\ndef run(raw):\n    return raw\n"


def write(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def shipped(src: Path) -> list[str]:
    return [f.path for f in sources.select(src).files]


def save_src(cli, tmp_path):
    (tmp_path / "m.bin").write_bytes(b"m")
    assert cli("register", tmp_path / "m.bin", "--name", "m").exit_code == 0
    return cli("save", tmp_path / "out", "--model", "m", "--source-dir", tmp_path / "src", "--entry-script", "score.py")


def test_a_link_to_a_secret_is_skipped_and_named(cli, tmp_path):
    src = tmp_path / "src"
    write(src / "score.py", SCRIPT)
    write(src / ".env", SECRET)
    write(src / ".ssh" / "id_rsa", SECRET)
    os.symlink(".env", src / "settings.txt")
    os.symlink(".ssh/id_rsa", src / "key.txt")
    result = save_src(cli, tmp_path)
    assert result.exit_code == 0, result.output
    assert {"skipped: settings.txt", "skipped: key.txt", "skipped: .env", "skipped: .ssh/"} <= {
        " ".join(line.split()[:2]) for line in result.output.splitlines()
    }
    for path in (tmp_path / "out").rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), f"the secret leaked into {path}"


@pytest.mark.parametrize(
    "rel",
    [
        "keys/SERVER.PEM",
        "tls.KEY",
        ".ENV",
        "sub/.docker/config.json",
        "credentials",
        "home/.AWS/credentials",
        "pkg/credentials",
        "credentials/credentials",
        "credentials/server.pem",
        "credentials/.git/config",
    ],
)  # such a folder still holds secrets
def test_secret_names_in_any_case_and_at_any_depth_are_skipped(tmp_path, rel):
    write(tmp_path / "src" / rel, SECRET)
    write(tmp_path / "src" / "ok.py")
    selection = sources.select(tmp_path / "src")
    assert [f.path for f in selection.files] == ["ok.py"]
    assert len(selection.skipped_secrets) == 1 and rel.startswith(selection.skipped_secrets[0].rstrip("/"))


def test_ordinary_code_named_like_a_secret_still_ships(tmp_path):
    for rel in ("credentials.py", "credentials/__init__.py", "auth/credentials_store.py", "docker/config.json"):
        write(tmp_path / "src" / rel)
    assert shipped(tmp_path / "src") == [
        "auth/credentials_store.py",
        "credentials.py",
        "credentials/__init__.py",
        "docker/config.json",
    ]


def test_registering_a_folder_leaves_its_secrets_out_and_names_them(tmp_path):
    folder = tmp_path / "mdl"
    write(folder / "w.bin", "weights")
    write(folder / ".env", SECRET)
    write(folder / ".git" / "config", "url = https://me:" + SECRET + "@example.com/r.git")
    os.symlink(".env", folder / "notes.txt")
    done = Registry(tmp_path / "home").register(folder, "m")
    assert [f.path for f in done.version.files] == ["mdl/w.bin"]
    assert done.skipped_secrets == ("mdl/.env", "mdl/.git/", "mdl/notes.txt")
    for blob in (tmp_path / "home" / "blobs").rglob("*"):
        assert not blob.is_file() or SECRET.encode() not in blob.read_bytes()


def test_register_names_the_secrets_it_left_out_on_stderr(tmp_path):
    write(tmp_path / "mdl" / "w.bin", "weights")
    write(tmp_path / "mdl" / ".env", SECRET)
    env = {**os.environ, "BUNDLER_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-m", "bundler", "register", "mdl", "--name", "m"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stdout == "m:1\n"
    assert done.stderr == "skipped: mdl/.env (looks like a secret; not registered)\n"


@pytest.mark.parametrize(
    "make_loop",
    [lambda d: os.symlink("loop", d / "loop"), lambda d: (os.symlink("b", d / "a"), os.symlink("a", d / "b"))],
)
def test_a_symlink_loop_is_one_clear_error(cli, tmp_path, make_loop):
    write(tmp_path / "src" / "score.py", SCRIPT)
    make_loop(tmp_path / "src")
    result = save_src(cli, tmp_path)
    assert result.exit_code == 2
    assert result.output.startswith("bundler: error: ") and result.output.count("\n") == 1
    assert "symlink loop" in result.output and "/src/" in result.output
    with pytest.raises(SourceError, match=r"src/(loop|a): symlink loop.*then register again"):
        Registry(tmp_path / "home").register(tmp_path / "src", "looped")


def test_an_ignored_loop_is_not_an_error(tmp_path):
    write(tmp_path / "src" / "ok.py")
    write(tmp_path / "src" / ".bundlerignore", "loop\n")
    os.symlink("loop", tmp_path / "src" / "loop")
    assert shipped(tmp_path / "src") == ["ok.py"]


def test_a_dangling_link_is_an_error_not_a_silent_gap(tmp_path):
    write(tmp_path / "src" / "ok.py")
    os.symlink("gone.py", tmp_path / "src" / "lib.py")
    with pytest.raises(SourceError, match=r"lib.py: symlink to .*gone.py, which does not exist"):
        sources.select(tmp_path / "src")


def _unreadable(monkeypatch, folder: Path) -> None:
    """`folder` cannot be listed, as after chmod 000 for a non-root user (root could read it anyway)."""
    real_scandir = os.scandir

    def scandir(path="."):
        if not isinstance(path, int) and Path(os.fsdecode(path)) == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_an_unreadable_source_folder_is_an_error_not_a_silent_gap(cli, tmp_path, monkeypatch):
    write(tmp_path / "src" / "score.py", SCRIPT)
    write(tmp_path / "src" / "lib" / "util.py")
    _unreadable(monkeypatch, tmp_path / "src" / "lib")
    result = save_src(cli, tmp_path)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output.startswith(
        f"bundler: error: cannot read the folder {tmp_path / 'src' / 'lib'} "
        "(Permission denied); fix its permissions, or add it to .bundlerignore"
    )
    assert not (tmp_path / "out").exists()
    write(tmp_path / "src" / ".bundlerignore", "lib/\n")
    assert shipped(tmp_path / "src") == ["score.py"]  # an ignored folder is never listed


def test_an_unreadable_model_folder_is_an_error_not_a_silent_gap(tmp_path, monkeypatch):
    write(tmp_path / "mm" / "outputs" / "a.bin")
    write(tmp_path / "mm" / "outputs" / "weights" / "w.bin")
    _unreadable(monkeypatch, tmp_path / "mm" / "outputs" / "weights")
    with pytest.raises(SourceError, match=r"cannot read the folder .*weights .*fix its permissions, then register"):
        Registry(tmp_path / "home").register(tmp_path / "mm" / "outputs", "p")
    assert Registry(tmp_path / "home").versions("p") == []


@pytest.mark.parametrize(
    "cwd, arg, top", [("proj/m1", "..", "proj"), ("proj/outputs", ".", "outputs"), ("proj", "./outputs/", "outputs")]
)
def test_a_registered_folder_keeps_its_own_name_whatever_the_spelling(tmp_path, monkeypatch, cwd, arg, top):
    write(tmp_path / "proj" / "outputs" / "a.bin")
    write(tmp_path / "proj" / "m1" / "bundler.toml")
    monkeypatch.chdir(tmp_path / cwd)
    paths = [f.path for f in Registry(tmp_path / "home").register(Path(arg), "x").version.files]
    assert paths and all(p.startswith(top + "/") for p in paths) and ".." not in "/".join(paths)


def test_a_record_with_a_path_leaving_the_model_folder_is_refused(tmp_path):
    registry = Registry(tmp_path / "home")
    write(tmp_path / "m.bin")
    registry.register(tmp_path / "m.bin", "m")
    record = tmp_path / "home" / "models" / "m" / "1.json"
    record.write_text(record.read_text().replace('"path": "m.bin"', '"path": "../bundler.toml"'))
    with pytest.raises(RegistryError, match=r"'\.\./bundler\.toml' leaves the model folder.*re-register"):
        registry.resolve(ModelRef("m"))


def test_a_linked_folder_ships_at_the_links_path(tmp_path):
    write(tmp_path / "src" / "vendor" / "mylib" / "__init__.py")
    os.symlink("vendor/mylib", tmp_path / "src" / "mylib")  # score.py does `import mylib`
    assert shipped(tmp_path / "src") == ["mylib/__init__.py", "vendor/mylib/__init__.py"]


@pytest.mark.parametrize(
    "make_links",
    [
        lambda src: os.symlink(".", src / "self"),
        lambda src: os.symlink("..", src / "sub" / "up"),
        lambda src: (os.symlink("../b", src / "a" / "x"), os.symlink("../a", src / "b" / "y")),
    ],
    ids=["itself", "its parent", "two links leading to each other"],
)
def test_a_linked_folder_that_holds_its_link_is_a_loop(tmp_path, make_links):
    for folder in ("sub", "a", "b"):
        write(tmp_path / "src" / folder / "f.py")
    make_links(tmp_path / "src")
    with pytest.raises(SourceError, match="symlink loop"):
        sources.select(tmp_path / "src")


def test_a_link_to_a_secret_folder_is_a_secret(tmp_path):
    write(tmp_path / "src" / ".ssh" / "id_rsa", SECRET)
    write(tmp_path / "src" / "ok.py")
    os.symlink(".ssh", tmp_path / "src" / "conf")
    selection = sources.select(tmp_path / "src")
    assert [f.path for f in selection.files] == ["ok.py"] and selection.skipped_secrets == (".ssh/", "conf/")


def test_a_file_reached_through_a_linked_folder_is_judged_where_it_really_is(tmp_path):
    write(tmp_path / "src" / ".docker" / "config.json", SECRET)  # registry credentials
    write(tmp_path / "src" / "ok.py")
    os.symlink(".docker", tmp_path / "src" / "dockercfg")
    selection = sources.select(tmp_path / "src")
    assert [f.path for f in selection.files] == ["ok.py"]
    assert selection.skipped_secrets == (".docker/config.json", "dockercfg/config.json")


def test_the_quick_secret_name_check_agrees_with_the_rules_in_order():
    """is_secret_name searches all the marking rules at once before pathspec reads them in
    order; over names made from every rule (as file, as folder, nested, with a negation's
    exceptions), both must say the same."""
    import pathspec

    from bundler import secret_rules

    ordered = pathspec.GitIgnoreSpec.from_lines(secret_rules.NAME_RULES)
    stems = {rule.lstrip("!").replace("**/", "").replace("*", "x").rstrip("/") for rule in secret_rules.NAME_RULES}
    stems |= {"model.bin", "config.json", "credentials_store.py", "environment", "keys", "my.pem.txt", "Kubeconfig"}
    names = set()
    for stem in stems:
        for shape in ("{}", "{}/", "a/{}", "a/b/{}/", "{}/inner.txt", "a/{}/inner/", "{}.bak", "x{}"):
            names.add(shape.format(stem))
    assert len(names) > 400
    disagree = [name for name in sorted(names) if secret_rules.is_secret_name(name) != ordered.match_file(name.lower())]
    assert disagree == []
    marked = [name for name in names if secret_rules.is_secret_name(name)]
    assert len(marked) > 100 and "credentials/" not in marked and "a/credentials" in marked
