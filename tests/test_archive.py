"""The archive: one deterministic file for the bundle (`pack`, `save --archive`), checked by
`verify` without extracting, refusing what an archive from another network must not hold.
Building from it with no network at all is tests/containers/test_air_gap.py."""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import tarfile
import time
import tracemalloc
from pathlib import Path

import pytest

from bundler import api, archive, layout

SCORE = "def init():\n    pass\n\n\ndef run(raw):\n    return raw\n"


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "score.py").write_text(SCORE)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "a.bin").write_bytes(os.urandom(300_000))
    (tmp_path / "weights" / "b.txt").write_text("labels\n")
    monkeypatch.setenv("BUNDLER_HOME", str(tmp_path / "registry"))
    monkeypatch.chdir(tmp_path)
    api.register("weights", "m")
    return tmp_path


def bundler(*args, cwd=None, env=None, umask=None):
    return subprocess.run(
        [sys.executable, "-m", "bundler", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )


def save_args(out):
    return ("save", out, "--model", "m", "--entry-script", "score.py")


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar"])
def test_the_same_bundle_gives_the_same_bytes_whatever_the_umask_zone_or_home(project, tmp_path, suffix):
    first = bundler(*save_args("one"), "--archive", f"one{suffix}", umask=0o022, env={"TZ": "UTC", "HOME": "/root"})
    assert first.returncode == 0, first.stderr
    other_home = tmp_path / "home2"
    other_home.mkdir()
    second = bundler(
        *save_args("two"),
        "--archive",
        f"two{suffix}",
        umask=0o077,
        env={"TZ": "Asia/Kathmandu", "HOME": str(other_home)},
    )
    assert second.returncode == 0, second.stderr
    assert (project / f"one{suffix}").read_bytes() == (project / f"two{suffix}").read_bytes()
    assert f"archive: one{suffix}" in first.stdout.replace(str(project) + "/", "")


def test_tar_and_gzip_read_it_back_and_the_extracted_folder_verifies(project, tmp_path):
    assert bundler(*save_args("out"), "--archive", "out.tar.gz").returncode == 0
    data = (project / "out.tar.gz").read_bytes()
    assert data[:4] == b"\x1f\x8b\x08\x00"  # gzip, deflate, no flags: no file name in the header
    assert data[4:8] == b"\0\0\0\0"  # and no time
    assert subprocess.run(["gzip", "-t", "out.tar.gz"]).returncode == 0
    listing = subprocess.run(["tar", "-tvzf", "out.tar.gz"], capture_output=True, text=True, check=True).stdout
    lines = listing.splitlines()
    assert all(" 0/0 " in line and "1970-01-01" in line for line in lines), listing
    names = [line.split()[-1] for line in lines]
    folders = [n for n in names if n.endswith("/")]
    assert names == sorted(folders) + sorted(n for n in names if not n.endswith("/"))  # folders, then files
    assert "Dockerfile" in names and "bundle.json" in names
    extracted = tmp_path / "extracted"
    extracted.mkdir()
    subprocess.run(["tar", "-xzf", "out.tar.gz", "-C", extracted], check=True)
    assert bundler("verify", extracted).returncode == 0
    assert (extracted / "azureml-models/m/1/weights/a.bin").read_bytes() == (project / "weights" / "a.bin").read_bytes()


def test_pack_of_an_existing_bundle_equals_save_archive(project):
    assert bundler(*save_args("out"), "--archive", "saved.tar").returncode == 0
    packed = bundler("pack", "out", "-o", "packed.tar")
    assert packed.returncode == 0, packed.stderr
    assert (project / "saved.tar").read_bytes() == (project / "packed.tar").read_bytes()
    assert packed.stdout.splitlines()[0].startswith("wrote ")
    with tarfile.open(project / "packed.tar") as tar:
        members = tar.getnames()
    assert set(members) >= set(layout.read_manifest(project / "out").files) | {"bundle.json"}


def test_verify_an_archive_without_extracting(project):
    assert bundler(*save_args("out"), "--archive", "out.tar.gz").returncode == 0
    ok = bundler("verify", "out.tar.gz")
    assert (ok.returncode, ok.stdout) == (0, "ok: every file of out.tar.gz matches bundle.json\n")
    assert not (project / "bundle.json").exists() and not (project / "Dockerfile").exists()  # nothing extracted


def rewrite(source: Path, target: Path, change) -> None:
    """A copy of the archive SOURCE with each member passed through change(info, data) ->
    [(info, data)], as an attacker or a damaged copy would make it."""
    with tarfile.open(source) as tar_in, tarfile.open(target, "w:gz") as tar_out:
        for member in tar_in.getmembers():
            data = tar_in.extractfile(member).read() if member.isfile() else None
            for info, content in change(member, data):
                tar_out.addfile(info, io.BytesIO(content) if content is not None else None)


def test_verify_reports_modified_missing_and_extra_members(project):
    assert bundler(*save_args("out"), "--archive", "out.tar.gz").returncode == 0

    def tamper(info, data):
        if info.name == "azureml-app/score.py":
            info.size = len(b"evil")
            return [(info, b"evil")]
        if info.name == "README.md":
            return []
        if info.name == "Dockerfile":
            extra = tarfile.TarInfo("payload.sh")
            extra.size = 2
            return [(info, data), (extra, b"x\n")]
        return [(info, data)]

    rewrite(project / "out.tar.gz", project / "bad.tar.gz", tamper)
    result = bundler("verify", "bad.tar.gz")
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["modified: azureml-app/score.py", "missing: README.md", "extra: payload.sh"]
    assert result.stderr == "bundler: error: bad.tar.gz: 3 entries differ from bundle.json\n"
    json_report = bundler("verify", "bad.tar.gz", "--json")
    assert '"modified": [\n    "azureml-app/score.py"\n  ]' in json_report.stdout


def link(name, kind, target="x"):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "evil, why",
    [
        (lambda: (tarfile.TarInfo("/etc/cron.d/x"), b""), "is an absolute path"),
        (lambda: (tarfile.TarInfo("azureml-app/../../escape"), b""), "leaves the archive's folder"),
        (lambda: (link("azureml-app/link", tarfile.SYMTYPE, "/etc/passwd"), None), "is a link or a device"),
        (lambda: (link("azureml-app/hard", tarfile.LNKTYPE, "Dockerfile"), None), "is a link or a device"),
        (lambda: (link("azureml-app/dev", tarfile.CHRTYPE), None), "is a link or a device"),
        (lambda: (tarfile.TarInfo("Dockerfile"), b""), "appears twice"),
    ],
)
def test_unsafe_members_are_refused_in_one_line(project, evil, why):
    assert bundler(*save_args("out"), "--archive", "out.tar.gz").returncode == 0

    def add_evil(info, data):
        if info.name != "README.md":
            return [(info, data)]
        bad, content = evil()
        if content is not None:
            bad.size = len(content)
        return [(info, data), (bad, content)]

    rewrite(project / "out.tar.gz", project / "evil.tar.gz", add_evil)
    result = bundler("verify", "evil.tar.gz")
    assert result.returncode == 1
    assert why in result.stderr and "an archive is input from another network: refusing it" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""
    assert not Path("/etc/cron.d/x").exists() and not (project.parent / "escape").exists()


def test_not_an_archive_is_one_line(project):
    (project / "junk.tar.gz").write_bytes(b"not gzip at all")
    result = bundler("verify", "junk.tar.gz")
    assert result.returncode == 1
    assert result.stderr.startswith("bundler: error: junk.tar.gz: not a readable archive")


def test_pack_refuses_a_bundle_edited_since_it_was_saved(project):
    assert bundler(*save_args("out")).returncode == 0
    (project / "out" / "azureml-app" / "score.py").write_text(SCORE + "# edited\n")
    edited = bundler("pack", "out", "-o", "out.tar")
    assert edited.returncode == 1
    assert "out/azureml-app/score.py differs from bundle.json; run bundler verify out" in edited.stderr
    assert not (project / "out.tar").exists() and not list(project.glob(".out.tar.*"))  # no half archive
    (project / "out" / "azureml-app" / "score.py").write_text(SCORE)
    (project / "out" / "notes.txt").write_text("mine")
    extra = bundler("pack", "out", "-o", "out.tar")
    assert extra.returncode == 1 and "1 file(s) its bundle.json does not list (notes.txt)" in extra.stderr


def test_pack_refuses_a_name_that_is_not_an_archive_and_a_target_inside(project):
    assert bundler(*save_args("out")).returncode == 0
    wrong = bundler("pack", "out", "-o", "out.zip")
    assert wrong.returncode == 2 and "an archive's name ends in .tar, .tar.gz, .tgz" in wrong.stderr
    inside = bundler("pack", "out", "-o", "out/self.tar")
    assert inside.returncode == 2 and "is inside the bundle" in inside.stderr


def test_a_killed_pack_leaves_no_archive_under_its_name(project):
    big = project / "big.bin"
    with open(big, "wb") as handle:
        for _ in range(48):
            handle.write(os.urandom(1 << 20))
    api.register(big, "big")
    assert bundler("save", "out", "--model", "big", "--entry-script", "score.py").returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "bundler", "pack", "out", "-o", "out.tar.gz"])
    deadline = time.monotonic() + 30
    while not list(project.glob(".out.tar.gz.*.partial")) and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(project.glob(".out.tar.gz.*.partial")), "the pack ended before it could be killed"
    assert not (project / "out.tar.gz").exists()


def test_memory_stays_flat_while_packing(project):
    big = project / "big.bin"
    with open(big, "wb") as handle:
        for _ in range(64):
            handle.write(os.urandom(1 << 20))
    api.register(big, "big")
    bundle = api.save("out", api.Inputs(models=("big",), entry_script="score.py")).path
    tracemalloc.start()
    try:
        archive.pack(bundle, project / "out.tar.gz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB for a 64 MiB model"
    assert api.verify(project / "out.tar.gz").ok


def test_save_json_names_the_archive(project):
    import json

    result = bundler(*save_args("out"), "--archive", "out.tgz", "--json")
    document = json.loads(result.stdout)
    assert document["archive"]["path"] == str(project / "out.tgz")
    assert document["archive"]["bytes"] == (project / "out.tgz").stat().st_size
    with gzip.open(project / "out.tgz") as handle:
        assert handle.read(512)  # a real gzip stream


def test_an_archive_into_a_missing_folder_names_the_folder(project):
    assert bundler(*save_args("out")).returncode == 0
    result = bundler("pack", "out", "-o", "nowhere/x.tar.gz")
    assert result.returncode == 2
    assert (
        result.stderr
        == f"bundler: error: {project / 'nowhere'} is not a folder; create it, or write the archive elsewhere\n"
    )


def test_a_base_image_given_by_digest_works_everywhere(project):
    pinned = "python:3.11-slim@sha256:" + "0123456789abcdef" * 4
    result = bundler(*save_args("out"), "--base-image", pinned, "--archive", "out.tar")
    assert result.returncode == 0, result.stderr
    dockerfile = (project / "out" / "Dockerfile").read_text()
    assert f"ARG BASE_IMAGE={pinned}\n" in dockerfile
    login = (project / "out" / "registry-login.json").read_text()
    assert pinned in login and '"address": "docker.io"' in login
    assert layout.read_manifest(project / "out").base_image == pinned
    assert layout.base_image_file(pinned) == "base-images/python-3.11-slim-sha256-" + "0123456789abcdef" * 4 + ".tar"
    assert bundler("verify", "out.tar").returncode == 0


def test_the_tar_is_the_gzip_archive_uncompressed_and_tar_reads_it(project, tmp_path):
    """.tar is written by bundler itself (the kernel copies file bytes), .tar.gz through Python's
    tarfile: the same bytes either way, and GNU tar extracts a bundle that verifies."""
    assert bundler(*save_args("out"), "--archive", "out.tar").returncode == 0
    assert bundler("pack", "out", "-o", "out.tar.gz").returncode == 0
    assert gzip.decompress((project / "out.tar.gz").read_bytes()) == (project / "out.tar").read_bytes()
    extracted = tmp_path / "from-tar"
    extracted.mkdir()
    subprocess.run(["tar", "-xf", "out.tar", "-C", extracted], check=True)
    assert bundler("verify", extracted).returncode == 0


def crafted(project, name: str, members) -> Path:
    """An archive whose members are (TarInfo, bytes or None) as given, after a real bundle's."""
    path = project / name
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_crafted_headers_cannot_take_memory_or_time(project):
    huge_name = tarfile.TarInfo("x" * (3 << 20))  # a 3 MB path: a pax header tarfile would read whole
    crafted(project, "huge-header.tar.gz", [(huge_name, None)])
    sparse = tarfile.TarInfo("weights.bin")
    sparse.type = tarfile.GNUTYPE_SPARSE
    crafted(project, "sparse.tar.gz", [(sparse, None)])
    manifest = tarfile.TarInfo("bundle.json")
    manifest.size = (64 << 20) + 1
    with tarfile.open(project / "big-manifest.tar", "w") as tar:
        tar.addfile(manifest)  # a header claiming 64 MB and more, with no data after it
    for name, message in (
        ("huge-header.tar.gz", "a header claims more bytes"),
        ("sparse.tar.gz", "is a sparse file"),
        ("big-manifest.tar", "more than any bundle's"),
    ):
        started = time.monotonic()
        result = bundler("verify", name)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1 and time.monotonic() - started < 20


def test_verify_of_a_missing_archive_says_so(project):
    result = bundler("verify", "nothere.tar.gz")
    assert result.returncode == 1 and "no such archive" in result.stderr
