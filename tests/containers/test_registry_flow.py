"""The registry flow of the CLI, end to end against a real registry with a password:
[registry] in bundler.toml -> save -> login -> build --push / push -> pull by digest.

The registry is Debian's `docker-registry` (the Distribution registry) on 127.0.0.1, with
htpasswd (bcrypt) authentication and TLS from a CA made here with openssl; podman trusts
that CA through /etc/containers/certs.d/127.0.0.1:PORT/ca.crt. bundler runs as a user runs
it (a subprocess, in the environment where a plain `podman` uses the tests' storage), and
podman's auth file is a file of this module (REGISTRY_AUTH_FILE), never the machine's.

The password is random and distinctive: the last test proves it reached no file of the
bundle or of BUNDLER_HOME, no output of bundler, and no process's argument list.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import free_port
from local_tls import make_certificates
from requires import require_root

USER = "user"
PASSWORD_ENV = "TEST_REGISTRY_PASSWORD"
CERTS_D = Path("/etc/containers/certs.d")
TOOLS = {"docker-registry": "docker-registry", "skopeo": "skopeo", "htpasswd": "apache2-utils", "openssl": "openssl"}
RIGHT = object()  # Flow.bundler's default password: the registry's own
OUTPUTS: list[subprocess.CompletedProcess] = []  # every bundler command's, for the leak scan


def require_tools() -> None:
    """As the engine fixture does: a missing tool fails in CI, and skips elsewhere."""
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        packages = " ".join(TOOLS[tool] for tool in missing)
        message = f"{', '.join(missing)} not installed (Debian: {packages}; .ci/install-container-tools.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def run(*args, check=True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    if check:
        assert result.returncode == 0, (
            f"{' '.join(map(str, args))} ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result


@dataclass
class Registry:
    address: str  # 127.0.0.1:PORT
    password: str
    ca: Path
    cert_dir: Path  # holds ca.crt alone, for skopeo --cert-dir
    log: Path


def wait_for_registry(address: str, ca: Path, process: subprocess.Popen, log: Path) -> None:
    """Until https://ADDRESS/v2/ answers 401 with a Basic challenge: TLS and htpasswd are on."""
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca))
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            opener.open(f"https://{address}/v2/", timeout=2)
            raise AssertionError("the registry answered /v2/ without asking for a password")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401, f"/v2/ answered {exc.code}"
            assert exc.headers.get("WWW-Authenticate", "").startswith("Basic "), dict(exc.headers)
            return
        except OSError:
            pass
        assert process.poll() is None, f"docker-registry exited ({process.returncode}):\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"the registry never answered:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    require_root("the registry's CA is trusted through /etc/containers/certs.d")
    require_tools()
    folder = tmp_path_factory.mktemp("docker-registry")
    password = f"pw-{secrets.token_hex(16)}"  # distinctive: found anywhere, it leaked
    make_certificates(folder)
    # -i: the password on stdin, so not even this test puts it in an argument list.
    htpasswd = run("htpasswd", "-B", "-i", "-n", USER, input=password).stdout
    (folder / "htpasswd").write_text(htpasswd.strip() + "\n")
    port = free_port()
    address = f"127.0.0.1:{port}"
    (folder / "config.yml").write_text(
        f"""version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {folder / "storage"}
  delete:
    enabled: true
http:
  addr: {address}
  secret: {secrets.token_hex(16)}
  tls:
    certificate: {folder / "server.crt"}
    key: {folder / "server.key"}
auth:
  htpasswd:
    realm: bundler-test
    path: {folder / "htpasswd"}
"""
    )
    cert_dir = folder / "trust"
    cert_dir.mkdir()
    shutil.copy(folder / "ca.crt", cert_dir / "ca.crt")
    trust = CERTS_D / address
    made_certs_d = not CERTS_D.exists()
    trust.mkdir(parents=True, exist_ok=True)
    shutil.copy(folder / "ca.crt", trust / "ca.crt")
    log = folder / "registry.log"
    # Its own environment: the registry reads REGISTRY_* variables as configuration.
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(folder / "config.yml")],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_registry(address, folder / "ca.crt", process, log)
        yield Registry(address, password, folder / "ca.crt", cert_dir, log)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(trust, ignore_errors=True)
        if made_certs_d and not any(CERTS_D.iterdir()):
            CERTS_D.rmdir()


@dataclass
class Flow:
    """The project, its bundle, and the outputs of the commands the module runs once."""

    engine: object
    registry: Registry
    project: Path
    home: Path
    auth_file: Path
    save: subprocess.CompletedProcess | None = None
    login: subprocess.CompletedProcess | None = None
    build: subprocess.CompletedProcess | None = None
    watch: ArgvWatch | None = None
    local_tags: list[str] = field(default_factory=list)

    @property
    def bundle(self) -> Path:
        return self.project / "imagefiles"

    @property
    def remote(self) -> str:
        return f"{self.registry.address}/diabetes:1"

    def env(self, password=RIGHT, auth_file: Path | None = None) -> dict:
        """bundler's environment as a user's: plain `podman` uses the tests' storage, the auth
        file is this module's, and the password is in its variable (None: the variable is unset)."""
        env = {**self.engine.user_env(), "BUNDLER_HOME": str(self.home)}
        env["REGISTRY_AUTH_FILE"] = str(auth_file or self.auth_file)
        env.pop(PASSWORD_ENV, None)
        if password is not None:
            env[PASSWORD_ENV] = self.registry.password if password is RIGHT else password
        return env

    def bundler(self, *args, password=RIGHT, auth_file: Path | None = None, timeout=1800):
        result = subprocess.run(
            [sys.executable, "-m", "bundler", *map(str, args)],
            cwd=self.project,
            env=self.env(password, auth_file),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        OUTPUTS.append(result)
        return result

    def podman(self, *args, check=True) -> subprocess.CompletedProcess:
        """A plain `podman` as a user types it, in bundler's environment."""
        return run("podman", *args, check=check, env=self.env(None))


class ArgvWatch(threading.Thread):
    """Reads every process's argument list (/proc/*/cmdline) every few ms while bundler runs:
    records each that holds the secret, and the podman commands it saw, so that a watch
    which saw nothing cannot pass for one that found nothing."""

    def __init__(self, secret: str):
        super().__init__(daemon=True)
        self.secret = secret.encode()
        self.leaks: list[str] = []
        self.podman: set[str] = set()  # podman's subcommands seen: login, build, push...
        self.polls = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                        argv = handle.read()
                except OSError:  # gone already
                    continue
                if self.secret in argv:
                    self.leaks.append(argv.replace(b"\0", b" ").decode(errors="replace"))
                words = argv.split(b"\0")
                if os.path.basename(words[0]) == b"podman" and len(words) > 1:
                    self.podman.add(words[1].decode(errors="replace"))
            self.polls += 1
            time.sleep(0.002)

    def __enter__(self) -> ArgvWatch:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.join()


@pytest.fixture(scope="module")
def flow(engine, registry, diabetes, home, tmp_path_factory):
    """The README's diabetes project with [registry] added; saved, logged in, built and pushed
    once (`bundler build --push`), with the argument-list watch running."""
    if engine.name != "podman":
        pytest.skip("bundler would use the Docker engine here; this module drives podman's storage and auth file")
    project = tmp_path_factory.mktemp("registry-flow") / "diabetes"
    shutil.copytree(diabetes, project, ignore=shutil.ignore_patterns("imagefiles"))
    with open(project / "bundler.toml", "a") as handle:
        handle.write(
            f'\n[registry]\naddress = "{registry.address}"\nusername = "{USER}"\npassword_env = "{PASSWORD_ENV}"\n'
        )
    state = Flow(engine, registry, project, home, tmp_path_factory.mktemp("auth") / "auth.json")
    state.save = state.bundler("save", "imagefiles")
    assert state.save.returncode == 0, state.save.stdout + state.save.stderr
    with ArgvWatch(registry.password) as state.watch:
        state.login = state.bundler("login", "imagefiles")
        if state.login.returncode == 0:
            state.build = state.bundler("build", "--push", "imagefiles")
    state.local_tags = ["localhost/diabetes:latest", state.remote]
    yield state
    for tag in state.local_tags:
        state.podman("rmi", "-f", tag, check=False)


def test_save_names_the_push_reference_and_no_password(flow):
    document = json.loads((flow.bundle / "registry-login.json").read_text())
    ours = [entry for entry in document["registries"] if entry["address"] == flow.registry.address]
    assert len(ours) == 1, document
    assert ours[0]["push"] == flow.remote
    assert ours[0]["username"] == USER
    assert ours[0]["password_from"] == {"env": PASSWORD_ENV}
    # The base image still comes from Docker Hub, with no login of ours.
    assert [entry["address"] for entry in document["registries"]] == ["docker.io", flow.registry.address], document
    assert flow.registry.password not in json.dumps(document)


def test_login_then_build_push(flow):
    assert flow.login.returncode == 0, flow.login.stdout + flow.login.stderr
    assert flow.login.stdout.splitlines() == [f"logged in: {flow.registry.address}"]
    assert flow.build is not None and flow.build.returncode == 0, flow.build.stdout + flow.build.stderr
    lines = flow.build.stdout.splitlines()
    tail = lines[lines.index("built image: diabetes") + 1 :]
    assert len(tail) == 4, flow.build.stdout
    assert tail[0] == f"pushed: {flow.remote}"
    digest = re.fullmatch(r"digest: (sha256:[0-9a-f]{64})", tail[1])
    assert digest, tail[1]
    pinned = f"{flow.registry.address}/diabetes@{digest.group(1)}"
    assert tail[2] == f"pull it as: {pinned}"
    assert tail[3] == f"deploy it: bundler deploy-manifest imagefiles --image {pinned} | kubectl apply -f -"
    assert f"pushing diabetes as {flow.remote}" in flow.build.stderr


def pushed_digest(flow) -> str:
    line = next(line for line in flow.build.stdout.splitlines() if line.startswith("digest: "))
    return line.removeprefix("digest: ")


def skopeo_digest(flow) -> str:
    # The credential from the engine's auth file (podman login wrote it): no password in argv.
    trust = ("--authfile", flow.auth_file, "--cert-dir", flow.registry.cert_dir)
    return json.loads(run("skopeo", "inspect", *trust, f"docker://{flow.remote}").stdout)["Digest"]


def test_push_json_prints_one_document(flow):
    assert flow.build is not None and flow.build.returncode == 0, "bundler build --push failed"
    result = flow.bundler("push", "imagefiles", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert set(document) == {"reference", "digest", "pinned"}
    assert document["reference"] == flow.remote
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", document["digest"])
    assert document["pinned"] == f"{flow.registry.address}/diabetes@{document['digest']}"
    # The same image, pushed again: the same manifest, so the same digest.
    assert document["digest"] == pushed_digest(flow)
    assert document["digest"] == skopeo_digest(flow)


def test_the_digest_is_the_registrys_and_pulls_the_image(flow):
    assert flow.build is not None and flow.build.returncode == 0, "bundler build --push failed"
    digest = pushed_digest(flow)
    assert skopeo_digest(flow) == digest
    pinned = f"{flow.registry.address}/diabetes@{digest}"
    flow.podman("rmi", *flow.local_tags)
    assert flow.podman("image", "exists", flow.remote, check=False).returncode == 1
    flow.local_tags.append(pinned)
    flow.podman("pull", pinned)
    assert flow.podman("image", "inspect", "--format", "{{.Digest}}", pinned).stdout.strip() == digest
    config = flow.engine.config(pinned)
    assert "5001/tcp" in config["ExposedPorts"]
    health = config.get("Healthcheck") or {}
    assert health.get("Test", [None])[0] == "CMD", config
    assert config["User"] not in ("", "root", "0", "0:0")


def test_a_wrong_password_is_one_line_and_exit_1(flow, tmp_path):
    auth_file = tmp_path / "auth.json"
    result = flow.bundler("login", "imagefiles", password="wrong", auth_file=auth_file)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"bundler: error: podman login to {flow.registry.address} as {USER} failed:"), lines
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert flow.registry.address not in (auth_file.read_text() if auth_file.exists() else "")


def test_an_unset_password_variable_is_named_and_exit_2(flow, tmp_path):
    result = flow.bundler("login", "imagefiles", password=None, auth_file=tmp_path / "auth.json")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bundler: error: ") and PASSWORD_ENV in lines[0], lines
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "auth.json").exists()


def test_the_password_reaches_no_file_output_or_argument_list(flow):
    """Last in the module: it scans the outputs of every bundler command run above."""
    secret = flow.registry.password
    encoded = base64.b64encode(f"{USER}:{secret}".encode()).decode()  # as an auth file holds it
    watch = flow.watch
    assert watch.polls > 0
    # The watch must have been able to see a leak: it saw podman's own commands run.
    assert {"login", "build", "push"} <= watch.podman, watch.podman
    assert watch.leaks == []
    for result in OUTPUTS:
        assert secret not in result.stdout + result.stderr, result.args
        assert encoded not in result.stdout + result.stderr, result.args
    assert len(OUTPUTS) >= 3
    scanned = 0
    for root in (flow.project, flow.home):  # the project holds the bundle (imagefiles/)
        for path in root.rglob("*"):
            assert secret not in str(path)
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                assert secret.encode() not in data, path
                assert encoded.encode() not in data, path
                scanned += 1
    assert (flow.bundle / "registry-login.json").is_file() and scanned > 10
    # By design of `docker login` (and podman's), the engine keeps the credential in its own
    # auth file, here REGISTRY_AUTH_FILE: the one place it is meant to be, outside the bundle.
    auths = json.loads(flow.auth_file.read_text())["auths"]
    assert base64.b64decode(auths[flow.registry.address]["auth"]).decode() == f"{USER}:{secret}"
