"""`bundler verify` and `bundler diff`."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def bundle(tmp_path, cli, monkeypatch):
    (tmp_path / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    (tmp_path / "model.bin").write_bytes(bytes(range(256)) * 10)
    monkeypatch.chdir(tmp_path)
    cli("register", "model.bin", "--name", "m")
    assert cli("save", "out", "--model", "m", "--entry-script", "score.py").exit_code == 0
    return tmp_path / "out"


def test_verify_clean_bundle(bundle, cli):
    result = cli("verify", bundle)
    assert result.exit_code == 0 and result.output.strip() == f"ok: every file of {bundle} matches bundle.json"


def test_verify_lists_modified_missing_extra_and_mode(bundle, cli):
    (bundle / "Dockerfile").write_text("FROM scratch\n")
    (bundle / "README.md").unlink()
    (bundle / "notes.txt").write_text("mine")
    os.chmod(bundle / "azureml-app" / "score.py", 0o755)  # same bytes, other mode
    result = cli("verify", bundle)
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "modified: Dockerfile",
        "modified: azureml-app/score.py",
        "missing: README.md",
        "extra: notes.txt",
        f"bundler: error: {bundle}: 4 entries differ from bundle.json",
    ]


def test_verify_same_size_different_content(bundle, cli):
    model = bundle / "azureml-models" / "m" / "1" / "model.bin"
    data = bytearray(model.read_bytes())
    data[100] ^= 0xFF
    model.write_bytes(bytes(data))
    assert cli("verify", bundle).output.splitlines()[0] == "modified: azureml-models/m/1/model.bin"


def test_verify_not_a_bundle(tmp_path, cli):
    result = cli("verify", tmp_path)
    assert result.exit_code == 1 and "is not a bundle" in result.output


def test_verify_streams_in_chunks(bundle, monkeypatch):
    """Memory must not grow with model size: files are read one chunk at a time."""
    import bundler.digest as digest
    from bundler import verify

    sizes = []
    real_open = open

    def spy_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        real_read = handle.read

        def read(size=-1):
            sizes.append(size)
            return real_read(size)

        handle.read = read
        return handle

    monkeypatch.setattr(digest, "open", spy_open, raising=False)
    assert verify.check(bundle).ok
    assert sizes and all(0 < s <= digest.HASH_CHUNK for s in sizes)  # a few MiB at a time, never the whole file


def test_diff_shows_hand_edits_and_generator_changes(bundle, cli, tmp_path):
    dockerfile = bundle / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("EXPOSE 5001", "EXPOSE 5001\n# my note"))
    (bundle / "mine.txt").write_text("x")
    (tmp_path / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw.upper()\n")
    before = {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    result = cli("diff", bundle, "--model", "m", "--entry-script", "score.py")
    assert result.exit_code == 0
    out = result.output
    assert "-# my note" in out  # the user's edit, which save would drop
    assert "+    return raw.upper()" in out  # the generator's change
    assert "only in out: mine.txt (save would delete it)" in out
    assert "bundle.json" in out
    assert out.splitlines()[-1] == f"save would change {bundle} as shown above"
    assert {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()} == before  # diff writes nothing


def test_diff_without_changes(bundle, cli):
    result = cli("diff", bundle, "--model", "m", "--entry-script", "score.py")
    assert result.output.splitlines() == [f"no changes: save would write {bundle} exactly as it is"]


def test_diff_binary_model_change(bundle, cli, tmp_path):
    (tmp_path / "model.bin").write_bytes(b"\x00\xff new weights")
    cli("register", "model.bin", "--name", "m")
    result = cli("diff", bundle, "--model", "m:2", "--entry-script", "score.py")
    assert "new file: azureml-models/m/2/model.bin" in result.output
    assert "only in out: azureml-models/m/1/model.bin (save would delete it)" in result.output


def test_a_link_in_place_of_a_file_is_modified_not_an_error(bundle, cli):
    (bundle / "README.md").unlink()
    os.symlink("/nonexistent", bundle / "README.md")
    os.symlink("/etc/hostname", bundle / "azureml-app" / "score.py.tmp")  # an extra link is just extra
    (bundle / "Dockerfile").unlink()
    os.symlink("README.md", bundle / "Dockerfile")
    result = cli("verify", bundle)
    assert result.output.splitlines()[:3] == [
        "modified: Dockerfile",
        "modified: README.md",
        "extra: azureml-app/score.py.tmp",
    ]
    diff = cli("diff", bundle, "--model", "m", "--entry-script", "score.py")
    assert diff.exit_code == 0 and "not a regular file: README.md (save would write a file)" in diff.output
    assert cli("save", "out", "--model", "m", "--entry-script", "score.py", "--force").exit_code == 0
    assert cli("verify", bundle).exit_code == 0


@pytest.mark.parametrize("manifest", ["[]", '{"files": {"Dockerfile": "x"}}', '{"files": {}, "inputs": []}', "{"])
def test_a_badly_shaped_manifest_is_one_line(bundle, cli, manifest):
    (bundle / "bundle.json").write_text(manifest)
    for command in (
        ["verify", bundle],
        ["serve", bundle],
        ["save", "out", "--model", "m", "--entry-script", "score.py", "--force"],
    ):
        result = cli(*command)
        assert result.exit_code == 1, command
        assert (
            result.output.strip().startswith(
                f"bundler: error: {bundle / 'bundle.json'}: not a readable bundle manifest"
            )
            and len(result.output.strip().splitlines()) == 1
        )


def test_diff_of_a_folder_save_would_refuse(tmp_path, cli, monkeypatch):
    (tmp_path / "score.py").write_text("def init():\n    pass\ndef run(raw):\n    return raw\n")
    (tmp_path / "m.bin").write_bytes(b"m")
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "keep.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    cli("register", "m.bin", "--name", "m")
    result = cli("diff", "nb", "--model", "m", "--entry-script", "score.py")
    assert result.exit_code == 1 and "is a non-empty folder that is not a bundle" in result.output
    assert "save would delete" not in result.output
