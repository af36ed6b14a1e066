"""A bundle carried across an air gap as one file builds and serves where nothing is but that file.

On the connected side, `bundler save --vendor --with-base-image --archive` writes the
diabetes example (wheels and the base image inside) as one archive. Across the gap a new
folder holds only a copy of that archive, and a new, empty podman storage of this test's
own (--root, --runroot, --tmpdir in tmp; never the tests' shared storage, never the
machine's) stands for the other machine's engine. There, as a user would:

    bundler verify imagefiles.tar.gz
    tar -xzOf imagefiles.tar.gz base-images/python-3.11-slim.tar | podman load
    unshare -n podman build --pull=never - < imagefiles.tar.gz

and the image's own command (run with buildah, as engine.py does) predicts what the model
predicts here. The build runs in a network namespace with no network at all; the test
proves that namespace has none, so it cannot pass on a build that quietly used PyPI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import engine as engines
import joblib
import numpy as np
import pytest
from harness import MEASUREMENTS, http, serving
from requires import require_root

SEED_REQUEST = {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}
JSON = {"Content-Type": "application/json"}
BASE_ARCHIVE = "base-images/python-3.11-slim.tar"
BASE_IMAGE = "docker.io/library/python:3.11-slim"
TAG = "airgap"

# Run on each side of `unshare -n`: the interfaces there, and whether PyPI answers.
NETWORK_PROBE = """
import json, socket
try:
    socket.create_connection(("pypi.org", 443), timeout=5).close()
    reached = True
except OSError:
    reached = False
print(json.dumps({"interfaces": [name for _, name in socket.if_nameindex()], "pypi": reached}))
"""


class SeparateStorage(engines.PodmanEngine):
    """engine.py's podman operations (config, start, stop, remove_image) on a new, empty
    storage of its own under ROOT: the engine of the machine across the gap."""

    def __init__(self, root: Path, driver: str):
        # podman refuses a runroot longer than 50 characters: that one lives in /tmp itself.
        self.folders = (root, Path(tempfile.mkdtemp(prefix="bundler-gap-run-", dir="/tmp")))
        self.storage = driver
        self.storage_flags = ("--root", root / "graph", "--runroot", self.folders[1], "--storage-driver", driver)
        self.podman = ("podman", *self.storage_flags, "--tmpdir", root / "libpod-tmp")
        self.buildah = ("buildah", *self.storage_flags)

    def image_ids(self) -> list[str]:
        return self.run(*self.podman, "images", "--all", "--quiet", "--no-trunc").stdout.split()

    def destroy(self) -> None:
        """Every container and image gone, every mount under its folders unmounted, the folders removed."""
        self.run(*self.buildah, "rm", "--all", check=False)
        self.run(*self.podman, "rmi", "--all", "--force", check=False)
        for folder in self.folders:
            for mount in reversed(_mounts_under(folder)):
                self.run("umount", "--lazy", mount, check=False)
            shutil.rmtree(folder, ignore_errors=True)
            assert not folder.exists() and not _mounts_under(folder), f"could not remove {folder}"


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4].replace("\\040", " ") for line in handle]
    return [point for point in points if (point + "/").startswith(prefix)]


@pytest.fixture
def gap_storage(engine, tmp_path):
    if engine.name != "podman":
        pytest.skip("bundler exports the base image with the Docker engine here; this test drives podman storage")
    require_root("the build with no network runs in a network namespace of its own (unshare -n)")
    if not shutil.which("unshare"):
        pytest.fail("unshare (util-linux) is needed for the build with no network")
    storage = SeparateStorage(tmp_path / "gap-storage", engine.storage)  # overlay as root here, else vfs
    try:
        yield storage
    finally:
        storage.destroy()


def run(*args, check=False, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=1800, **kwargs)
    if check:
        assert result.returncode == 0, (
            f"{' '.join(map(str, args))} ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result


def bundler(*args, cwd, env) -> subprocess.CompletedProcess:
    result = run(sys.executable, "-m", "bundler", *args, cwd=cwd, env=env)
    assert result.returncode == 0, f"bundler {' '.join(map(str, args))}:\n{result.stdout}\n{result.stderr}"
    return result


def tar_member(archive: Path, member: str) -> list[str]:
    """The command that prints one member of ARCHIVE, unextracted."""
    return ["tar", "-xzOf", str(archive), member]


def test_archive_carried_across_an_air_gap_builds_with_no_network_and_serves(
    engine, gap_storage, diabetes, home, tmp_path
):
    # The connected side: the example project (a copy: the shared one stays as it is).
    project = tmp_path / "project"
    shutil.copytree(diabetes, project, ignore=shutil.ignore_patterns("imagefiles"))
    carry = tmp_path / "carry" / "imagefiles.tar.gz"
    carry.parent.mkdir()
    started = time.monotonic()
    saved = bundler(
        "save",
        "imagefiles",
        "--vendor",
        "--with-base-image",
        "--archive",
        carry,
        cwd=project,
        env={**engine.user_env(), "BUNDLER_HOME": str(home)},
    )
    MEASUREMENTS["air gap: save --vendor --with-base-image --archive"] = (
        f"{time.monotonic() - started:.1f} s, archive {carry.stat().st_size / 1e6:.1f} MB"
    )
    assert f"archive: {carry} (" in saved.stdout, saved.stdout
    assert "vendored: " in saved.stdout, saved.stdout

    # Across the gap: a new folder with only the archive, a new storage with no image, no registry.
    gap = tmp_path / "gap"
    gap.mkdir()
    archive = gap / "imagefiles.tar.gz"
    shutil.copyfile(carry, archive)
    assert os.listdir(gap) == [archive.name]
    assert gap_storage.image_ids() == [], "the storage across the gap must start empty"
    gap_env = {**os.environ, "BUNDLER_HOME": str(tmp_path / "gap-home")}  # an empty registry: none is needed

    verified = bundler("verify", archive.name, cwd=gap, env=gap_env)
    assert verified.stdout.strip().splitlines()[-1] == f"ok: every file of {archive.name} matches bundle.json"

    manifest = json.loads(run(*tar_member(archive, "bundle.json"), cwd=gap, check=True).stdout)
    recorded = manifest["inputs"]["base_image_archives"]
    assert [(entry["image"], entry["path"]) for entry in recorded] == [("python:3.11-slim", BASE_ARCHIVE)]
    assert BASE_ARCHIVE in manifest["files"]

    # tar -xzOf imagefiles.tar.gz base-images/python-3.11-slim.tar | podman ... load
    member = subprocess.Popen(tar_member(archive, BASE_ARCHIVE), cwd=gap, stdout=subprocess.PIPE)
    loaded = run(*gap_storage.podman, "load", stdin=member.stdout, cwd=gap)
    member.stdout.close()
    assert member.wait() == 0 and loaded.returncode == 0, loaded.stdout + loaded.stderr
    image_id = gap_storage.run(*gap_storage.podman, "image", "inspect", "--format", "{{.Id}}", BASE_IMAGE).stdout
    assert f"sha256:{image_id.strip()}" == recorded[0]["id"], "the loaded base image is not the one bundle.json names"
    assert gap_storage.image_ids() == [f"sha256:{image_id.strip()}"]

    # No network at all in the build's namespace: not PyPI, and no interface but loopback.
    outside = json.loads(run(sys.executable, "-c", NETWORK_PROBE, check=True).stdout)
    inside = json.loads(run("unshare", "-n", sys.executable, "-c", NETWORK_PROBE, check=True).stdout)
    assert outside["pypi"] is True, "the control failed: PyPI does not answer even outside the namespace"
    assert inside == {"interfaces": ["lo"], "pypi": False}, inside

    started = time.monotonic()
    with open(archive, "rb") as context:
        built = run(
            "unshare",
            "-n",
            *gap_storage.podman,
            *("build", "--pull=never", "--isolation", "chroot", "--format", "docker", "-t", TAG, "-"),
            stdin=context,
            cwd=gap,
        )
    assert built.returncode == 0, built.stdout + built.stderr
    MEASUREMENTS["air gap: build with no network (- < archive)"] = f"{time.monotonic() - started:.1f} s"
    assert os.listdir(gap) == [archive.name], "the build from stdin left files in the folder"

    model = joblib.load(project / "model.pkl")
    expected = model.predict(np.array(SEED_REQUEST["data"])).tolist()
    with serving(gap_storage, TAG) as (_, port):
        status, body = http("POST", port, "/score", json.dumps(SEED_REQUEST).encode(), JSON)
        assert status == 200
        assert json.loads(body) == pytest.approx(expected)
