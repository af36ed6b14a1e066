"""save never leaves a half-written bundle and never deletes what it did not write."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bundler import verify


def save(cli, *extra):
    return cli("save", "out", "--model", "m", "--entry-script", "score.py", *extra)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def no_leftovers(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith(".bundler-tmp-")]


def test_resave_of_an_untouched_bundle_replaces_it(project, cli):
    assert save(cli).exit_code == 0
    (project / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return 2\n")
    assert save(cli).exit_code == 0
    assert "return 2" in (project / "out/azureml-app/score.py").read_text()
    assert verify.check(project / "out").ok and no_leftovers(project)


def test_hand_edited_bundle_is_refused_with_the_list(project, cli):
    save(cli)
    (project / "out/Dockerfile").write_text("FROM mine\n")
    (project / "out/README.md").unlink()
    (project / "out/notes.md").write_text("notes")
    before = snapshot(project / "out")
    result = save(cli)
    assert result.exit_code == 1
    assert (
        "has hand edits that saving would lose (edited: Dockerfile; deleted: README.md; added: notes.md)"
        in result.output
    )
    assert snapshot(project / "out") == before


def test_force_replaces_a_hand_edited_bundle(project, cli):
    save(cli)
    (project / "out/Dockerfile").write_text("FROM mine\n")
    assert save(cli, "--force").exit_code == 0
    assert verify.check(project / "out").ok


@pytest.mark.parametrize("force", [False, True])
def test_non_bundle_folder_is_never_replaced(project, cli, force):
    (project / "out").mkdir()
    (project / "out" / "thesis.tex").write_text("years of work")
    result = save(cli, *(["--force"] if force else []))
    assert result.exit_code == 1 and "not a bundle" in result.output
    assert (project / "out" / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize("force", [False, True])
def test_a_file_in_the_way_is_never_replaced(project, cli, force):
    (project / "out").write_text("a file")
    result = save(cli, *(["--force"] if force else []))
    assert result.exit_code == 1 and "is not a folder" in result.output
    assert (project / "out").read_text() == "a file"


def test_empty_folder_is_used(project, cli):
    (project / "out").mkdir()
    assert save(cli).exit_code == 0 and verify.check(project / "out").ok


def test_disk_full_mid_save_leaves_the_old_bundle(project, cli, monkeypatch):
    import bundler.fill as fill

    save(cli)
    before = snapshot(project / "out")
    (project / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return 3\n")
    calls = {"n": 0}
    real = fill._write_bytes

    def failing(folder, name, data, mode):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(folder, name, data, mode)

    monkeypatch.setattr(fill, "_write_bytes", failing)
    result = save(cli)
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"bundler: error: cannot write the bundle to {project / 'out'}: No space left on device; nothing was changed"
    )
    assert snapshot(project / "out") == before and no_leftovers(project)


def test_permission_error_mid_copy_is_one_line(project, cli, monkeypatch):
    import bundler.fill as fill

    save(cli)
    before = snapshot(project / "out")
    real = fill._write_entry

    def denied(folders, entry, update=None):
        if entry.path.startswith("azureml-models/"):
            raise PermissionError(errno.EACCES, "Permission denied", str(entry.content.path))
        return real(folders, entry, update)

    monkeypatch.setattr(fill, "_write_entry", denied)
    result = save(cli)
    assert result.exit_code == 1 and "Permission denied; nothing was changed" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert snapshot(project / "out") == before and no_leftovers(project)


def test_an_unreadable_source_file_is_named(project, cli, monkeypatch):
    import bundler.fill as fill

    def denied(path, *args, **kwargs):
        if str(path).endswith("score.py"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(fill, "open", denied, raising=False)
    result = save(cli)
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"bundler: error: cannot read {project / 'score.py'} (Permission denied); "
        "make it readable or leave it out of the bundle (.bundlerignore)"
    )
    assert not (project / "out").exists() and no_leftovers(project)


def test_a_missing_registry_file_names_the_model_file(project, cli, isolated_home):
    (blob,) = [p for p in (isolated_home / "blobs").rglob("*") if p.is_file()]
    blob.unlink()
    result = save(cli)
    assert result.exit_code == 1
    assert (
        f"registry file {blob} for azureml-models/m/1/m.bin cannot be read (No such file or directory)" in result.output
    )
    assert "register the model again" in result.output and not (project / "out").exists()


def test_old_copy_that_will_not_go_is_not_called_a_failed_save(project, cli, monkeypatch):
    import bundler.leftovers as leftovers

    save(cli)
    (project / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return 4\n")

    def stuck(parent_fd, name, expected=None):
        raise PermissionError(errno.EACCES, "Permission denied", name)

    monkeypatch.setattr(leftovers, "remove_tree", stuck)
    result = save(cli)
    assert result.exit_code == 1
    assert f"the bundle is saved to {project / 'out'}, but its old copy" in result.output
    assert "nothing was changed" not in result.output
    assert "return 4" in (project / "out/azureml-app/score.py").read_text() and verify.check(project / "out").ok


REMOVE_AS_OWNER = """
import os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from bundler.leftovers import remove_tree
tree = Path(sys.argv[2]) / "old"
(tree / "sub").mkdir(parents=True)
(tree / "sub" / "f").write_text("x")
(tree / "sub" / "closed").mkdir()
(tree / "sub" / "closed" / "g").write_text("y")
os.chmod(tree / "sub" / "closed", 0o000)  # not even listable
for folder in (tree / "sub", tree):
    os.chmod(folder, 0o555)  # chmod -R a-w
remove_tree(os.open(tree.parent, os.O_RDONLY | os.O_DIRECTORY), tree.name)
print("gone" if not tree.exists() else "still there")
"""


def test_a_read_only_tree_is_removed_by_its_owner(tmp_path):
    # As root, permissions never bite: run as nobody, on a copy of the package nobody can read.
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="bundler-owner-"))
    try:
        shutil.copytree(
            Path(__file__).resolve().parents[1] / "bundler", work / "bundler", ignore=shutil.ignore_patterns("runtime")
        )
        scratch = work / "scratch"
        scratch.mkdir()
        argv = [sys.executable, "-c", REMOVE_AS_OWNER, str(work), str(scratch)]
        if os.geteuid() == 0:
            for folder, _, _ in os.walk(work):
                os.chmod(folder, 0o755)
            os.chown(scratch, 65534, 65534)
            python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, *argv[1:]]
        result = subprocess.run(argv, capture_output=True, text=True, cwd=work)
        assert result.stdout.strip() == "gone", result.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_unwritable_temp_folder_is_one_line(project, cli, monkeypatch):
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", "/tmp/x")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    result = save(cli)
    assert result.exit_code == 1
    assert result.output.strip() == "bundler: error: /tmp/x: Permission denied"
    assert not (project / "out").exists()


KILL_SCRIPT = """
import sys
from bundler.cli import main
sys.argv = ["bundler", "save", "out", "--model", "big", "--entry-script", "score.py"]
main()
"""


def test_sigkill_at_any_moment_leaves_a_whole_bundle(project, cli):
    """Kill `save` (copying a few hundred MB) at several moments: out/ always verifies,
    as the previous bundle or the new one, and the next save cleans up."""
    big = project / "big.bin"
    with open(big, "wb") as handle:
        block = os.urandom(1 << 20)
        for _ in range(300):
            handle.write(block)
    assert cli("register", big, "--name", "big").exit_code == 0
    env = {**os.environ}
    first = subprocess.run([sys.executable, "-c", KILL_SCRIPT], cwd=project, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    timings = []
    for delay in (0.05, 0.2, 0.4, 0.7, 1.0, 1.5):
        (project / "score.py").write_text(f"def init():\n    pass\ndef run(raw):\n    return {delay!r}\n")
        process = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT],
            cwd=project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        report = verify.check(project / "out")
        assert report.ok, f"killed after {delay}s: {report.summary()}"
        shipped = (project / "out/azureml-app/score.py").read_text()
        timings.append((delay, "new" if repr(delay) in shipped else "old"))
    final = subprocess.run([sys.executable, "-c", KILL_SCRIPT], cwd=project, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert no_leftovers(project), "the next save must clean leftover temporary trees"
    assert {state for _, state in timings} <= {"old", "new"}
    assert any(state == "old" for _, state in timings), f"no kill landed mid-copy: {timings}"
