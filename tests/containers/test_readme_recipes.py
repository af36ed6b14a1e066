"""The README's recipes "Across an air gap" and "Behind a corporate proxy" work as written.

Each command block the README marks with `<!-- NAME: tests/containers/test_readme_recipes.py
runs this block -->` is taken from README.md (the indented lines right after the marker, as
tests/test_readme.py takes its walkthrough) and run, word for word, by bash:

- "air-gap, connected side" in a copy of the diabetes example (model registered), then
  "air-gap, other side" in a new folder holding only the archive it made, with a new, empty
  image storage of its own and no network at all (`unshare -n`): the base image must come
  from the archive, the packages from its wheels. The image `diabetes` must exist there.
- "proxy" in a copy of the example whose bundler.toml names this machine's index and CA,
  with a `.netrc` in HOME and HTTPS_PROXY pointing at a CONNECT proxy of this test's own on
  127.0.0.1: the build must succeed, pip must have tunnelled through that proxy (so the
  build argument reached it), and the image must keep no proxy setting.

So the README cannot drift from what works.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from harness import MEASUREMENTS, REPO
from requires import require_root

README = (REPO / "README.md").read_text()
MARKER = re.compile(r"<!-- (?P<name>[^:>]+): tests/containers/test_readme_recipes\.py runs this block -->\n")
BLOCKS = ("air-gap, connected side", "air-gap, other side", "proxy")
TIMEOUT = 1800  # seconds for one block; a cold build that pip-installs scikit-learn takes minutes

# The only substitution: this machine has the docker client but no Docker engine, so a
# `docker` first on PATH hands each command to podman, with the storage its environment
# names (engine.user_env(), or the other side's own storage.conf). For `build` it adds what
# the tests' engine adds (tests/containers/engine.py, build_command): chroot isolation
# (`podman run`-style isolation does not work here), never pulling (no registry answers),
# and the docker image format (which keeps HEALTHCHECK). And --http-proxy=false: podman
# would otherwise copy the client's own proxy variables into every RUN, which docker never
# does (its builds get a proxy only from --build-arg); without it the proxy test could pass
# on a Dockerfile that ignores the build argument. `load`, `build - < file` and every other
# command pass through unchanged.
DOCKER_SHIM = """#!/usr/bin/env bash
if [ "${1-}" = build ]; then
    shift
    exec podman build --isolation chroot --pull=never --format docker --http-proxy=false "$@"
fi
exec podman "$@"
"""


def block(name: str) -> str:
    """The indented command lines right after NAME's marker comment, unindented."""
    found = [match for match in MARKER.finditer(README) if match.group("name") == name]
    assert len(found) == 1, f"README.md has {len(found)} blocks marked {name!r}"
    lines = []
    for line in README[found[0].end() :].splitlines():
        if not line.startswith("    "):
            break
        lines.append(line[4:])
    assert lines, f"README.md's marker {name!r} is not followed by an indented command block"
    return "\n".join(lines)


def test_the_marked_blocks_are_found():
    # Every block the README says this file runs is one of those it runs, and the reverse.
    assert sorted(match.group("name") for match in MARKER.finditer(README)) == sorted(BLOCKS)
    assert "--archive imagefiles.tar.gz" in block("air-gap, connected side")
    assert "docker load" in block("air-gap, other side") and "docker build" in block("air-gap, other side")
    assert "$HTTPS_PROXY" in block("proxy") and "$HOME/.netrc" in block("proxy")


@pytest.fixture
def podman_engine(engine):
    if engine.name != "podman":
        pytest.skip("these recipes are run through a docker shim over podman storage; a real engine is not driven")
    return engine


@pytest.fixture
def shim_path(tmp_path) -> str:
    """PATH for the README's commands: the docker shim first, then this venv's `bundler`."""
    folder = tmp_path / "shim"
    folder.mkdir()
    (folder / "docker").write_text(DOCKER_SHIM)
    (folder / "docker").chmod(0o755)
    return os.pathsep.join([str(folder), str(Path(sys.executable).parent), os.environ["PATH"]])


def run_block(name: str, cwd: Path, env: dict, prefix=()) -> subprocess.CompletedProcess:
    script = f"set -euo pipefail\n{block(name)}\n"
    started = time.monotonic()
    result = subprocess.run(
        [*prefix, "bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    MEASUREMENTS[f"README block {name!r}"] = f"{time.monotonic() - started:.1f} s"
    assert result.returncode == 0, (
        f"README block {name!r} failed ({result.returncode}):\n{script}\n"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result


def copy_project(diabetes: Path, target: Path) -> Path:
    """The example project, copied so the session's shared one stays as it is."""
    shutil.copytree(diabetes, target, ignore=shutil.ignore_patterns("imagefiles", "imagefiles.tar.gz"))
    return target


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4].replace("\\040", " ") for line in handle]
    return [point for point in points if (point + "/").startswith(prefix)]


class OtherSideStorage:
    """A new, empty image storage standing for the engine across the gap: its own graph root,
    run root and libpod tmp dir, named to a plain podman only through CONTAINERS_STORAGE_CONF
    and CONTAINERS_CONF; never the tests' storage, never the machine's."""

    def __init__(self, root: Path, driver: str):
        # podman refuses a run root longer than 50 characters: that one lives in /tmp itself.
        self.short = Path(tempfile.mkdtemp(prefix="bundler-rr-", dir="/tmp"))
        self.folders = (root, self.short)
        root.mkdir()
        storage_conf, containers_conf = root / "storage.conf", root / "containers.conf"
        storage_conf.write_text(
            f'[storage]\ndriver = "{driver}"\ngraphroot = "{root / "graph"}"\nrunroot = "{self.short / "run"}"\n'
        )
        containers_conf.write_text(f'[engine]\ntmp_dir = "{self.short / "tmp"}"\n')
        env = {k: v for k, v in os.environ.items() if k not in ("STORAGE_DRIVER", "STORAGE_OPTS")}
        self.env = {
            **env,
            "BUILDAH_ISOLATION": "chroot",
            "CONTAINERS_STORAGE_CONF": str(storage_conf),
            "CONTAINERS_CONF": str(containers_conf),
        }

    def podman(self, *args, check=True) -> subprocess.CompletedProcess:
        result = subprocess.run(["podman", *map(str, args)], env=self.env, capture_output=True, text=True)
        assert not check or result.returncode == 0, f"podman {' '.join(map(str, args))}:\n{result.stderr}"
        return result

    def images(self) -> list[str]:
        return self.podman("images", "--all", "--quiet", "--no-trunc").stdout.split()

    def destroy(self) -> None:
        subprocess.run(["buildah", "rm", "--all"], env=self.env, capture_output=True)
        self.podman("rmi", "--all", "--force", check=False)
        for folder in self.folders:
            for mount in reversed(_mounts_under(folder)):
                subprocess.run(["umount", "--lazy", mount], capture_output=True)
            shutil.rmtree(folder, ignore_errors=True)
            assert not folder.exists() and not _mounts_under(folder), f"could not remove {folder}"


@pytest.fixture
def other_side_storage(podman_engine, tmp_path):
    require_root("the other side of the air gap runs in a network namespace of its own (unshare -n)")
    if not shutil.which("unshare"):
        pytest.fail("unshare (util-linux) is needed for the side of the air gap with no network")
    storage = OtherSideStorage(tmp_path / "other-side-storage", podman_engine.storage)
    try:
        yield storage
    finally:
        storage.destroy()


def test_air_gap_recipe_as_written(podman_engine, other_side_storage, shim_path, diabetes, home, tmp_path):
    # The connected side: in the project, with the model registered, the tests' storage
    # holding the base image that --with-base-image exports.
    project = copy_project(diabetes, tmp_path / "project")
    connected_env = {**podman_engine.user_env(), "BUNDLER_HOME": str(home), "PATH": shim_path}
    connected = run_block("air-gap, connected side", project, connected_env)
    archive = project / "imagefiles.tar.gz"
    assert archive.is_file(), connected.stdout
    assert "ok: every file of imagefiles.tar.gz matches bundle.json" in connected.stdout, connected.stdout

    # The other side: a new folder holding only the archive, an engine with no image at all,
    # a registry home with nothing in it, and no network for any of the block's commands.
    other = tmp_path / "other-side"
    other.mkdir()
    shutil.copyfile(archive, other / archive.name)
    assert os.listdir(other) == [archive.name]
    assert other_side_storage.images() == [], "the storage across the gap must start empty"
    (tmp_path / "other-side-home").mkdir()
    other_env = {**other_side_storage.env, "BUNDLER_HOME": str(tmp_path / "other-side-home"), "PATH": shim_path}
    offline = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", "import socket; print([n for _, n in socket.if_nameindex()])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert offline.stdout.strip() == "['lo']", offline.stdout  # nothing but loopback in there
    result = run_block("air-gap, other side", other, other_env, prefix=("unshare", "-n"))
    assert "ok: every file of imagefiles.tar.gz matches bundle.json" in result.stdout, result.stdout

    assert other_side_storage.podman("image", "exists", "diabetes", check=False).returncode == 0, (
        f"no image diabetes across the gap; it holds:\n{other_side_storage.podman('images').stdout}"
    )
    assert other_side_storage.podman("image", "exists", "python:3.11-slim", check=False).returncode == 0


class ConnectProxy(socketserver.ThreadingTCPServer):
    """An HTTPS proxy on 127.0.0.1 (CONNECT only, to port 443) that records each tunnel it opened."""

    daemon_threads = True

    def __init__(self):
        self.tunnels: list[str] = []
        super().__init__(("127.0.0.1", 0), _ConnectHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ConnectHandler(socketserver.StreamRequestHandler):
    def handle(self):
        request = self.rfile.readline(65537).decode("latin-1").split()
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # the request's headers
        if len(request) != 3 or request[0] != "CONNECT" or not request[1].endswith(":443"):
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = request[1].rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
        except OSError:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.tunnels.append(request[1])
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        with upstream:
            upstream.settimeout(None)
            ends = [self.connection, upstream]
            while True:
                ready, _, _ = select.select(ends, [], [], 300)
                if not ready:
                    return
                for end in ready:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is self.connection else self.connection).sendall(data)


@pytest.fixture
def connect_proxy():
    proxy = ConnectProxy()
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_proxy_recipe_as_written(podman_engine, shim_path, connect_proxy, diabetes, home, tmp_path):
    # This machine's pip uses PyPI itself (no index_url in its configuration) through a
    # TLS-inspecting proxy whose CA is in the system bundle: that is the "corporate" index and CA.
    project = copy_project(diabetes, tmp_path / "project")
    (project / "certs").mkdir()
    shutil.copyfile("/etc/ssl/certs/ca-certificates.crt", project / "certs" / "corp-root.pem")
    settings = project / "bundler.toml"
    text = settings.read_text()
    assert text.count("[environment]\n") == 1, text
    settings.write_text(
        text.replace(
            "[environment]\n",
            '[environment]\nindex_url = "https://pypi.org/simple"\nca_certificates = ["certs/corp-root.pem"]\n',
        )
    )
    user_home = tmp_path / "user-home"
    user_home.mkdir()
    password = f"pw-{os.urandom(8).hex()}"  # PyPI ignores it; found anywhere in the image, it leaked
    (user_home / ".netrc").write_text(f"machine pypi.org login bundler-test password {password}\n")
    (user_home / ".netrc").chmod(0o600)

    env = {
        **podman_engine.user_env(),
        "BUNDLER_HOME": str(home),
        "HOME": str(user_home),
        "HTTPS_PROXY": connect_proxy.url,
        "PATH": shim_path,
    }
    for name in ("https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        env.pop(name, None)
    try:
        run_block("proxy", project, env)
        assert "pypi.org:443" in connect_proxy.tunnels, (
            f"pip never tunnelled to PyPI through HTTPS_PROXY (tunnels: {connect_proxy.tunnels})"
        )
        MEASUREMENTS["README proxy block: tunnels through HTTPS_PROXY"] = str(len(connect_proxy.tunnels))

        inspected = podman_engine.run(*podman_engine.podman, "image", "inspect", "diabetes").stdout
        config = json.loads(inspected)[0]["Config"]
        proxy_env = [item for item in config.get("Env") or [] if "proxy" in item.lower() or connect_proxy.url in item]
        assert proxy_env == [], f"the image keeps a proxy setting: {proxy_env}"
        history = podman_engine.run(*podman_engine.podman, "image", "history", "--no-trunc", "diabetes").stdout
        for text in (inspected, history):
            assert password not in text, "the netrc password is in the image's metadata"
            assert connect_proxy.url not in text, "the build's proxy is in the image's metadata"
    finally:
        podman_engine.remove_image("diabetes")
