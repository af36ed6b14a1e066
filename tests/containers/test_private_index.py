"""A private package index with a password, end to end, with real parts on 127.0.0.1:

    [environment]
    index_url = "https://127.0.0.1:PORT/simple"
    ca_certificates = [...]
    bundler save imagefiles
    podman build --secret id=netrc,src=NETRC imagefiles

The index (private_index_servers.PackageIndex) is a PEP 503 simple index over HTTPS, with a
certificate from a CA made here with openssl, that answers 401 with a Basic challenge to
every request without the right user and a random password. It serves one package, a wheel
made here (bundler-index-probe 1.0, whose module holds a value unique to this run), which
the bundle's entry script returns: a /score answer holding that value proves the package
came from this index. Then, with the same index:

- no layer, history entry, label or Env of the image (nor of stage 1, where the secret was
  mounted), no file of the bundle and no output of `save` holds the password, the netrc's
  text or the Basic credential; the scan reads every byte of every layer, and finds a marker
  known to be there, so it cannot pass by reading nothing;
- a build without the secret, or with a wrong password, fails in bounded time with pip's
  error, never a prompt, and the index saw only refused requests;
- HTTP(S)_PROXY build args reach pip (a CONNECT proxy here sees the tunnel to the index),
  and no Env or history entry of the image keeps them.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import MEASUREMENTS, http, serving
from private_index_servers import ConnectProxy, PackageIndex, make_certificates, make_wheel

USER = "probe-user"
PROBE = "bundler-index-probe"
PROBE_MODULE = "bundler_index_probe"
PROBE_WHEEL = "bundler_index_probe-1.0-py3-none-any.whl"
# The system bundle: it holds this machine's TLS-inspecting proxy's CA, through which the
# build reaches PyPI (no HTTP(S)_PROXY, no pip index setting: the interception is transparent).
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
PYPI = "https://pypi.org/simple"
BUILD_TIMEOUT = 900
REFUSED_BUILD_TIMEOUT = 180  # a build that waited for a prompt would end here, and fail the test
SCORE_SCRIPT = f'''"""Returns what the package from the private index holds."""

import {PROBE_MODULE}


def init():
    pass


def run(raw_data):
    return {{"value": {PROBE_MODULE}.VALUE}}
'''


def require_tools() -> None:
    """As the engine fixture does: a missing tool fails in CI, and skips elsewhere."""
    checks = {"openssl": shutil.which("openssl"), str(SYSTEM_CA): SYSTEM_CA.is_file()}
    missing = [name for name, found in checks.items() if not found]
    if missing:
        message = f"{', '.join(missing)} not found (Debian: openssl, ca-certificates)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class BuildResult:
    command: list[str]
    returncode: int | None  # None: killed at the timeout
    output: str
    seconds: float


def build(
    engine,
    context: Path,
    tag: str,
    *,
    netrc: Path | None,
    build_args=(),
    no_cache=False,
    target=None,
    timeout=BUILD_TIMEOUT,
) -> BuildResult:
    """The engine's own build command (its storage, isolation and format), with the netrc
    secret, build args and a target added, as a user adds them to `podman build`. Killed
    (its whole process group, started here) if it outlives TIMEOUT."""
    words = engine.build_command(context, tag, no_cache)
    extra = ["--secret", f"id=netrc,src={netrc}"] if netrc else []
    for arg in build_args:
        extra += ["--build-arg", arg]
    extra += ["--target", target] if target else []
    command = [*map(str, words[:-1]), *extra, str(words[-1])]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},  # docker: --secret needs BuildKit
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        code = None
    return BuildResult(command, code, output, time.monotonic() - started)


def image_cli(engine) -> tuple[str, ...]:
    return tuple(engine.podman) if engine.name == "podman" else ("docker",)


@dataclass
class Scan:
    """Where each needle was found, and how much was read."""

    found: dict[bytes, list[str]]
    layers: int = 0
    files: int = 0
    bytes: int = 0

    def look(self, where: str, data: bytes) -> None:
        self.bytes += len(data)
        for needle, places in self.found.items():
            if needle in data:
                places.append(where)


def scan_image(engine, tag: str, needles: list[bytes], folder: Path) -> Scan:
    """Every byte of the image as `save` writes it (each layer's files, names, link targets and
    headers; its config: Env, labels, history), plus `image inspect` and `history --no-trunc`."""
    scan = Scan({needle: [] for needle in needles})
    cli = image_cli(engine)
    archive = folder / "image.tar"
    archive.unlink(missing_ok=True)
    save = ["save", "--format", "docker-archive"] if engine.name == "podman" else ["save"]
    engine.run(*cli, *save, "-o", archive, tag)
    with tarfile.open(archive) as outer:
        manifest = json.loads(outer.extractfile("manifest.json").read())
        layers = {layer for entry in manifest for layer in entry["Layers"]}
        assert layers, manifest
        for item in outer:
            if not item.isfile():
                continue
            if item.name not in layers:  # the config (Env, labels, history), manifest.json, repositories
                scan.look(item.name, outer.extractfile(item).read())
                continue
            scan.layers += 1
            # Uncompressed or gzip: each member read whole, with its name, link target and headers.
            with tarfile.open(fileobj=outer.extractfile(item), mode="r:*") as layer:
                for member in layer:
                    where = f"{item.name}:{member.name}"
                    header = " ".join([member.name, member.linkname, json.dumps(member.pax_headers)]).encode()
                    scan.look(f"{where} (header)", header)
                    if member.isfile():
                        scan.files += 1
                        scan.look(where, layer.extractfile(member).read())
    for words in (("image", "inspect", tag), ("history", "--no-trunc", tag)):
        scan.look(" ".join(words[:-1]), engine.run(*cli, *words).stdout.encode())
    return scan


def scan_folder(folder: Path, needles: list[bytes]) -> Scan:
    scan = Scan({needle: [] for needle in needles})
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            scan.files += 1
            scan.look(path.relative_to(folder).as_posix(), path.read_bytes())
    return scan


@dataclass
class Setup:
    index: PackageIndex
    password: str
    value: str  # the probe's VALUE: unique to this run
    netrc: Path
    wrong_netrc: Path
    project: Path
    home: Path
    save_output: str
    work: Path  # for scans and images

    @property
    def bundle(self) -> Path:
        return self.project / "imagefiles"

    def secrets(self) -> list[bytes]:
        """What must be found nowhere: the password, the netrc's text, the Basic credential."""
        credential = base64.b64encode(f"{USER}:{self.password}".encode())
        return [self.password.encode(), self.netrc.read_bytes().strip(), credential]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The index running with its wheel; a project that uses it, saved; the netrc files."""
    require_tools()
    work = tmp_path_factory.mktemp("private-index")
    certs = work / "certs"
    certs.mkdir()
    ca, cert, key = make_certificates(certs)
    value = f"probe-{secrets.token_hex(12)}"
    wheels = work / "wheels"
    wheels.mkdir()
    wheel = make_wheel(wheels, PROBE, "1.0", PROBE_MODULE, f"VALUE = {value!r}\n")
    assert wheel.name == PROBE_WHEEL
    password = f"pw-{secrets.token_hex(16)}"  # distinctive: found anywhere, it leaked
    # As a user keeps it: outside the project, in a netrc file of their own.
    user_home = work / "user-home"
    user_home.mkdir()
    netrc = user_home / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login {USER} password {password}\n")
    netrc.chmod(0o600)
    wrong_netrc = user_home / "wrong.netrc"
    wrong_netrc.write_text(f"machine 127.0.0.1 login {USER} password wrong-{secrets.token_hex(8)}\n")
    with PackageIndex([wheel], cert, key, USER, password) as index:
        project = work / "project"
        (project / "certs").mkdir(parents=True)
        shutil.copy(ca, project / "certs" / "test-ca.pem")
        # pip's --cert REPLACES its trust store, and the runtime's requirements (gunicorn) come
        # from PyPI, which this machine reaches through a TLS-inspecting proxy whose CA is in the
        # system bundle: so the CA certificates given are the test CA AND the system bundle
        # (bundler joins them into environment/ca-certificates.pem). A user behind such a proxy
        # gives its CA the same way.
        shutil.copy(SYSTEM_CA, project / "certs" / "system-ca.pem")
        (project / "bundler.toml").write_text(
            f"""[inference]
entry_script = "score.py"

[environment]
requirements = "requirements.txt"
index_url = "{index.url}"
extra_index_urls = ["{PYPI}"]
ca_certificates = ["certs/test-ca.pem", "certs/system-ca.pem"]
"""
        )
        (project / "requirements.txt").write_text(f"{PROBE}==1.0\n")
        (project / "score.py").write_text(SCORE_SCRIPT)
        home = work / "bundler-home"
        save = subprocess.run(
            [sys.executable, "-m", "bundler", "save", "imagefiles"],
            cwd=project,
            env={**os.environ, "BUNDLER_HOME": str(home)},
            capture_output=True,
            text=True,
        )
        assert save.returncode == 0, save.stdout + save.stderr
        yield Setup(index, password, value, netrc, wrong_netrc, project, home, save.stdout + save.stderr, work)


@dataclass
class Built:
    tag: str
    stage1_tag: str
    result: BuildResult
    requests: list  # what the index saw during the build


@pytest.fixture(scope="module")
def built(engine, setup):
    """The bundle built as the user builds it: the netrc as a build secret. Then stage 1 alone
    (--target environment, the same build's cache), where the secret was mounted, to scan too."""
    run_id = secrets.token_hex(4)
    tag, stage1_tag = f"bundler-test/private-index:{run_id}", f"bundler-test/private-index-stage1:{run_id}"
    seen = len(setup.index.seen())
    result = build(engine, setup.bundle, tag, netrc=setup.netrc)
    requests = setup.index.seen()[seen:]
    assert result.returncode == 0, f"{' '.join(result.command)}:\n{result.output[-6000:]}"
    MEASUREMENTS["build from the private index"] = f"{result.seconds:.1f} s"
    stage1 = build(engine, setup.bundle, stage1_tag, netrc=setup.netrc, target="environment")
    assert stage1.returncode == 0, f"{' '.join(stage1.command)}:\n{stage1.output[-6000:]}"
    # From the build's cache: pip did not run again, so this is the stage the image was made from.
    assert "Successfully installed" not in stage1.output, stage1.output[-6000:]
    yield Built(tag, stage1_tag, result, requests)
    engine.remove_image(tag)
    engine.remove_image(stage1_tag)


def test_bundle_installs_from_the_index_with_the_given_ca(setup):
    dockerfile = (setup.bundle / "Dockerfile").read_text()
    assert f"--index-url {setup.index.url}" in dockerfile
    assert f"--extra-index-url {PYPI}" in dockerfile
    assert "--mount=type=secret,id=netrc,target=/run/secrets/netrc" in dockerfile
    assert "--no-input" in dockerfile
    shipped = (setup.bundle / "environment" / "ca-certificates.pem").read_text()
    test_ca = (setup.work / "certs" / "ca.crt").read_text().strip()
    assert test_ca in shipped
    assert SYSTEM_CA.read_text().strip().splitlines()[-1] in shipped  # the system bundle joined too


def test_build_with_the_netrc_secret_serves_the_package_from_the_index(engine, setup, built):
    requests = built.requests
    downloads = [r for r in requests if r.path == f"/files/{PROBE_WHEEL}"]
    assert downloads and all(r.authorized and r.status == 200 for r in downloads), requests
    assert f"/files/{PROBE_WHEEL}" in built.result.output  # pip names where the wheel came from
    # Nothing was served without the password.
    assert all(r.status == 401 for r in requests if not r.authorized), requests
    with serving(engine, built.tag) as (_running, port):
        status, body = http("POST", port, "/score", b"{}", {"Content-Type": "application/json"})
    assert status == 200, body
    assert json.loads(body) == {"value": setup.value}


def assert_found_nowhere(scan: Scan, needles: list[bytes]) -> None:
    leaks = {needle.decode(errors="replace"): scan.found[needle] for needle in needles if scan.found[needle]}
    assert not leaks, f"found: {leaks}"


@pytest.mark.parametrize("which", ["image", "stage 1"])
def test_no_layer_history_label_or_env_holds_the_credentials(engine, setup, built, which):
    tag = built.tag if which == "image" else built.stage1_tag
    marker = setup.value.encode()  # in the installed package, so in a layer
    config_marker = b"io.bundler.generator" if which == "image" else b"/opt/venv/bin/pip install"
    folder = setup.work / f"scan-{which.replace(' ', '')}"
    folder.mkdir(exist_ok=True)
    scan = scan_image(engine, tag, [*setup.secrets(), marker, config_marker], folder)
    MEASUREMENTS[f"credential scan ({which})"] = f"{scan.layers} layers, {scan.files} files, {scan.bytes / 1e6:.0f} MB"
    # The scan can fail: it read layers and bytes, and it finds what is known to be there.
    assert scan.layers >= 2 and scan.files > 1000 and scan.bytes > 10_000_000, scan
    assert any(f"site-packages/{PROBE_MODULE}/__init__.py" in where for where in scan.found[marker]), scan.found
    assert any(not where.endswith(".tar") and ":" not in where for where in scan.found[config_marker]), scan.found
    assert_found_nowhere(scan, setup.secrets())


def test_no_file_of_the_bundle_or_output_of_save_holds_the_credentials(setup):
    needles = setup.secrets()
    control = setup.index.url.encode()  # the Dockerfile names the index
    for folder in (setup.project, setup.home):
        scan = scan_folder(folder, [*needles, control])
        if folder == setup.project:
            assert "Dockerfile" in [where.split("/")[-1] for where in scan.found[control]], scan.found
            assert scan.files > 10, scan
        assert_found_nowhere(scan, needles)
    for needle in needles:
        assert needle.decode() not in setup.save_output


@pytest.mark.parametrize("credentials", ["no secret", "wrong password"])
def test_build_refused_by_the_index_fails_fast_with_pips_error(engine, setup, built, credentials):
    # (after `built`: a refusal means something only where the same bundle builds with the secret)
    netrc = None if credentials == "no secret" else setup.wrong_netrc
    seen = len(setup.index.seen())
    tag = f"bundler-test/private-index-refused:{secrets.token_hex(4)}"
    # --no-cache: the secret is no part of the cache key, so a cached layer would hide the refusal.
    result = build(engine, setup.bundle, tag, netrc=netrc, no_cache=True, timeout=REFUSED_BUILD_TIMEOUT)
    requests = setup.index.seen()[seen:]
    engine.remove_image(tag)
    MEASUREMENTS[f"refused build ({credentials})"] = f"{result.seconds:.1f} s"
    assert result.returncode is not None, (
        f"the build was still running after {REFUSED_BUILD_TIMEOUT} s:\n{result.output}"
    )
    assert result.returncode != 0, result.output[-4000:]
    # pip 23.0.1 (the base image's) logs the 401 itself only at debug level (-vv), and says:
    assert f"No matching distribution found for {PROBE}==1.0" in result.output, result.output[-4000:]
    assert "User for" not in result.output and "Password:" not in result.output, result.output[-4000:]
    # ... because the index refused it: it was asked, and answered every request 401.
    asked = [r for r in requests if r.path.rstrip("/") == f"/simple/{PROBE}"]
    assert asked and all(r.status == 401 for r in requests), requests
    if credentials == "no secret":
        assert not any(r.credentials for r in requests), requests  # nothing to send
    else:
        assert all(r.credentials for r in asked), requests  # the netrc's, refused


def test_proxy_build_args_reach_pip_and_stay_out_of_the_image(engine, setup, built):
    tag = f"bundler-test/private-index-proxy:{secrets.token_hex(4)}"
    with ConnectProxy() as proxy:
        names = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
        # NO_PROXY empty: a NO_PROXY from this machine's environment (buildah passes it on)
        # could otherwise exempt 127.0.0.1, and pip would not use the proxy at all.
        build_args = [f"{name}={proxy.url}" for name in names] + ["NO_PROXY=", "no_proxy="]
        seen = len(setup.index.seen())
        # --no-cache: pip must run again, through the proxy.
        result = build(engine, setup.bundle, tag, netrc=setup.netrc, build_args=build_args, no_cache=True)
        tunnels = proxy.seen()
    try:
        assert result.returncode == 0, f"{' '.join(result.command)}:\n{result.output[-6000:]}"
        MEASUREMENTS["build through the CONNECT proxy"] = f"{result.seconds:.1f} s"
        # pip honoured the build arg: it tunnelled to the index (and to PyPI) through the proxy.
        assert ("CONNECT", f"127.0.0.1:{setup.index.port}") in tunnels, tunnels
        assert ("CONNECT", "pypi.org:443") in tunnels, tunnels
        assert any(r.path == f"/files/{PROBE_WHEEL}" and r.status == 200 for r in setup.index.seen()[seen:])
        config = engine.config(tag)
        env_names = [entry.split("=", 1)[0] for entry in config.get("Env") or []]
        assert not [name for name in env_names if "proxy" in name.lower()], config.get("Env")
        address = f"127.0.0.1:{proxy.port}".encode()
        folder = setup.work / "scan-proxy"
        folder.mkdir(exist_ok=True)
        scan = scan_image(engine, tag, [address, b"_PROXY=", b"_proxy=", setup.value.encode()], folder)
        assert scan.found[setup.value.encode()], scan  # the control: the package is in a layer
        assert_found_nowhere(scan, [address])
        # No history entry, Env or label names a proxy (layers hold Python's own urllib, which does).
        outside_layers = {where for places in scan.found.values() for where in places if ":" not in where}
        assert not {
            where for needle in (b"_PROXY=", b"_proxy=") for where in scan.found[needle] if where in outside_layers
        }, scan.found
    finally:
        engine.remove_image(tag)
