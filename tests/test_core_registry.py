"""The local model registry: versions, content addressing, names, streaming, concurrency."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from bundler.errors import InputError, ModelNotFound
from bundler.registry import ModelRef, Registry, parse_ref


def test_register_prints_name_version_as_last_line(cli, tmp_path):
    model = tmp_path / "model.pkl"
    model.write_bytes(b"weights")
    first = cli("register", model, "--name", "diabetes")
    second = cli("register", model, "--name", "diabetes", "--description", "retrained", "--tag", "algo=ridge")
    assert first.exit_code == 0 and first.output.splitlines()[-1] == "diabetes:1"
    assert second.exit_code == 0 and second.output.splitlines()[-1] == "diabetes:2"


def test_models_list_and_show(cli, tmp_path):
    model = tmp_path / "model.pkl"
    model.write_bytes(b"weights")
    cli("register", model, "--name", "diabetes")
    cli("register", model, "--name", "diabetes", "--description", "retrained", "--tag", "algo=ridge")
    listing = cli("models", "list")
    assert listing.exit_code == 0
    assert listing.output.splitlines()[1].split() == ["diabetes", "2", "1,", "2"]
    shown = cli("models", "show", "diabetes")  # no version: the latest
    sha = hashlib.sha256(b"weights").hexdigest()
    assert shown.output.splitlines() == [
        "diabetes:2",
        "description: retrained",
        "tag: algo=ridge",
        f"{sha}             7  model.pkl",
    ]
    assert cli("models", "show", "diabetes:1").output.splitlines()[0] == "diabetes:1"


def test_identical_files_are_stored_once(tmp_path):
    registry = Registry(tmp_path / "home")
    (tmp_path / "a").write_bytes(b"same bytes")
    (tmp_path / "b").write_bytes(b"same bytes")
    registry.register(tmp_path / "a", "one")
    registry.register(tmp_path / "b", "two")
    blobs = [p for p in (tmp_path / "home" / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    assert blobs[0].name == hashlib.sha256(b"same bytes").hexdigest()


def test_directory_keeps_its_name_and_sorted_relative_paths(tmp_path):
    folder = tmp_path / "outputs"
    (folder / "sub").mkdir(parents=True)
    (folder / "z.bin").write_bytes(b"z")
    (folder / "sub" / "a.txt").write_bytes(b"a")
    version = Registry(tmp_path / "home").register(folder, "m").version
    assert [f.path for f in version.files] == ["outputs/sub/a.txt", "outputs/z.bin"]


def test_register_streams_large_files_in_chunks(tmp_path, monkeypatch):
    """Memory must not grow with model size: no read() may ask for more than one chunk."""
    import bundler.registry as registry_module
    from bundler.digest import CHUNK_SIZE

    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (3 * CHUNK_SIZE + 5))
    sizes = []
    real_open = open

    class Spy:
        def __init__(self, handle):
            self.handle = handle

        def read(self, size=-1):
            sizes.append(size)
            return self.handle.read(size)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def spy_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return Spy(handle) if str(path) == str(big) and "r" in mode else handle

    monkeypatch.setattr(registry_module, "open", spy_open, raising=False)
    version = Registry(tmp_path / "home").register(big, "big").version
    assert version.files[0].size == big.stat().st_size
    assert sizes and all(0 < s <= CHUNK_SIZE for s in sizes)


@pytest.mark.parametrize("name", ["", "-lead", ".hidden", "a/b", "../up", "x" * 256, "sp ace", "ünï"])
def test_invalid_names_are_refused(tmp_path, name):
    (tmp_path / "m").write_bytes(b"m")
    with pytest.raises(InputError, match="invalid model name"):
        Registry(tmp_path / "home").register(tmp_path / "m", name)
    assert not (tmp_path / "home" / "models").exists() or not any((tmp_path / "home" / "models").iterdir())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("diabetes", ModelRef("diabetes")),
        ("diabetes:3", ModelRef("diabetes", 3)),
        ("a.b-c_d:10", ModelRef("a.b-c_d", 10)),
    ],
)
def test_parse_ref(text, expected):
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["diabetes:0", "diabetes:x", "diabetes:", ":1", "a:1:2", "../etc:1", "a/b:1", "d:١"])
def test_parse_ref_rejects_malformed(text):
    with pytest.raises(InputError):
        parse_ref(text)


def test_resolve_errors_name_the_fix(tmp_path):
    registry = Registry(tmp_path / "home")
    (tmp_path / "m").write_bytes(b"m")
    registry.register(tmp_path / "m", "known")
    with pytest.raises(ModelNotFound, match="registered: known.*bundler register PATH --name other"):
        registry.resolve(ModelRef("other"))
    with pytest.raises(ModelNotFound, match=r"no version 5 \(versions: 1\).*known:1"):
        registry.resolve(ModelRef("known", 5))


def test_version_record_is_whole_json(tmp_path):
    registry = Registry(tmp_path / "home")
    (tmp_path / "m").write_bytes(b"m")
    registry.register(tmp_path / "m", "x", "desc", {"k": "v"})
    record = json.loads((tmp_path / "home" / "models" / "x" / "1.json").read_text())
    assert record["version"] == 1 and record["tags"] == {"k": "v"} and record["files"][0]["size"] == 1
    assert not any((tmp_path / "home" / "tmp").iterdir())  # staging cleaned up


def test_concurrent_registers_get_distinct_versions(tmp_path):
    model = tmp_path / "m.bin"
    model.write_bytes(b"m" * 1000)
    home = tmp_path / "home"
    code = (
        "import sys; from bundler.registry import Registry; "
        "print(Registry(sys.argv[1]).register(sys.argv[2], 'same').version.version)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(home), str(model)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    versions = sorted(int(p.communicate()[0]) for p in procs)
    assert versions == [1, 2, 3, 4, 5, 6]
    assert Registry(home).versions("same") == [1, 2, 3, 4, 5, 6]


def test_home_resolution_flag_then_env_then_user_home(cli, tmp_path, monkeypatch):
    (tmp_path / "m").write_bytes(b"m")
    monkeypatch.delenv("BUNDLER_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert cli("register", tmp_path / "m", "--name", "a").exit_code == 0
    assert (tmp_path / "user" / ".bundler" / "models" / "a" / "1.json").is_file()
    monkeypatch.setenv("BUNDLER_HOME", str(tmp_path / "env-home"))
    cli("register", tmp_path / "m", "--name", "b")
    assert (tmp_path / "env-home" / "models" / "b" / "1.json").is_file()
    cli("register", tmp_path / "m", "--name", "c", "--home", tmp_path / "flag-home")
    assert (tmp_path / "flag-home" / "models" / "c" / "1.json").is_file()
    assert not (tmp_path / "env-home" / "models" / "c").exists()
