"""The runtime started the way the bundle's deploy/kubernetes.yaml says: the image's own command,
as the manifest's uid and gid, with a read-only root file system and only /tmp writable, the
manifest's env, and its CPU limit. Then the probes' path answers within the startup probe's
allowance, BUNDLER_WORKERS=auto becomes one worker per CPU of the limit, and SIGTERM drains
a request in flight well within terminationGracePeriodSeconds. (tests/test_deploy.py checks
what the manifest says; this module checks that the runtime does it.)

`podman run` does not work on these machines and `buildah run` (1.28) has no read-only root,
so the container is made here from its parts, as a container runtime makes it:

- the image's file system is `buildah mount`ed, and bind-mounted READ-ONLY as the root of a
  new mount and PID namespace (`unshare --mount --pid --fork`): the server is PID 1 there, as
  in a pod, and gets the SIGTERM the kubelet would send;
- /tmp is a tmpfs of its own (the manifest's emptyDir), /dev a tmpfs with the usual device
  nodes and a /dev/shm, /proc that namespace's, /sys read-only;
- resources.limits.cpu becomes a CFS quota on a cgroup of the server's own (cgroup v1 or v2,
  whichever this kernel has), mounted read-only at /sys/fs/cgroup as container runtimes do;
- then chroot, capabilities' bounding set dropped (drop: ALL), no_new_privs
  (allowPrivilegeEscalation: false), and setgroups/setgid/setuid to the manifest's
  runAsGroup/runAsUser before the image's command is exec'd in its WORKDIR, with the image's
  ENV overridden by the container's env (and HOME from the image's /etc/passwd).

Not reproduced: the seccomp profile, the memory limit, the kubelet's /etc/hosts and
resolv.conf, and a network namespace: the server shares the host's network, so BUNDLER_PORT
is set to a free port instead of the manifest's 5001 (after checking that 5001 is the
containerPort the probes name). The probes inside the container run in the server's own
namespaces and root (nsenter), as its uid and gid.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from harness import MEASUREMENTS, bundler, free_port, http
from requires import require_root

JSON = {"Content-Type": "application/json"}
TAG = "bundler-test/deploy-runtime:1"
SLOW_SECONDS = 3  # how long the request in flight takes
LONG_SECONDS = 35  # a request longer than gunicorn's graceful_timeout (30 s), within the scoring timeout (60 s)

# An entry script with a slow run() when asked: it leaves a mark in /tmp (the one writable
# place) when a request with a token starts, so the test knows that request is in flight.
SCORE = """\
import json
import os
import time


def init():
    global answer
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "answer.json")) as handle:
        answer = json.load(handle)["answer"]


def run(raw_data):
    request = json.loads(raw_data)
    if "token" in request:
        with open("/tmp/in-flight-" + request["token"], "w") as handle:
            handle.write(str(os.getpid()))
    time.sleep(float(request.get("sleep", 0)))
    return {"answer": answer, "token": request.get("token"), "slept": request.get("sleep", 0)}
"""
# [server] workers = 3 puts BUNDLER_WORKERS=3 in the image's ENV, a number "auto" cannot
# give here (1 under the manifest's limit of 1 CPU; the CPU count without a limit, and this
# test says so if that is 3): so the worker count shows that the manifest's env won.
BUNDLER_TOML = """\
models = ["slow"]

[inference]
entry_script = "score.py"

[environment]
requirements = "requirements.txt"
base_image = "python:3.11-slim"

[server]
workers = 3
"""

# Started as root inside the new mount and PID namespaces (it is PID 1 there): make the
# container's mounts, enter them, become the manifest's user, and exec the image's command.
LAUNCHER = r"""
import ctypes, json, os, subprocess, sys

config = json.loads(open(sys.argv[1]).read())
root = config["root"]


def mount(*args):
    subprocess.run(["mount", *args], check=True)


mount("--bind", config["rootfs"], root)
mount("-o", "remount,bind,ro", root)  # readOnlyRootFilesystem: true
mount("-t", "tmpfs", "-o", "mode=0777,nosuid,nodev", "tmp", root + "/tmp")  # the emptyDir
mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", root + "/proc")  # this PID namespace's
mount("-t", "tmpfs", "-o", "mode=0755,nosuid,size=65536k", "dev", root + "/dev")
for name in ("null", "zero", "full", "random", "urandom", "tty"):
    open(root + "/dev/" + name, "w").close()
    mount("--bind", "/dev/" + name, root + "/dev/" + name)
for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                     ("stderr", "/proc/self/fd/2")):
    os.symlink(target, root + "/dev/" + name)
os.mkdir(root + "/dev/shm")
mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev,noexec,size=65536k", "shm", root + "/dev/shm")
mount("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", root + "/sys")
if config["cgroup"]:
    kind, folder = config["cgroup"]
    cgroups = root + "/sys/fs/cgroup"
    mount("-t", "tmpfs", "-o", "mode=0755,nosuid,nodev,noexec", "cgroup", cgroups)
    target = cgroups if kind == "v2" else cgroups + "/cpu"
    if kind == "v1":
        os.mkdir(target)
    mount("--bind", folder, target)
    mount("-o", "remount,bind,ro", target)
    if kind == "v1":
        mount("-o", "remount,ro", cgroups)

last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())
libc = ctypes.CDLL(None, use_errno=True)
os.chroot(root)
os.chdir(config["workdir"])
for cap in range(last_cap + 1):  # capabilities: drop: ["ALL"]
    if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
        raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS: allowPrivilegeEscalation: false
    raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
os.setgroups([])
os.setgid(config["gid"])
os.setuid(config["uid"])
os.execvpe(config["argv"][0], config["argv"], config["env"])
"""

# Run inside the container: who it is, where it may write, what CPUs and CPU limit it sees.
PROBE = r"""
import errno, json, os
writes = {}
for folder in ("/", "/var/azureml-app", "/opt", "/opt/venv", "/etc", "/tmp", "/dev/shm"):
    path = os.path.join(folder, "probe-%d" % os.getpid())
    try:
        with open(path, "w") as handle:
            handle.write("written")
        os.remove(path)
        writes[folder] = "written"
    except OSError as exc:
        writes[folder] = errno.errorcode[exc.errno]
try:
    with open("/var/azureml-app/score.py", "a"):
        pass
    writes["/var/azureml-app/score.py"] = "written"
except OSError as exc:
    writes["/var/azureml-app/score.py"] = errno.errorcode[exc.errno]
root_options = [line.split()[5] for line in open("/proc/self/mountinfo") if line.split()[4] == "/"]
limit = {}
for name in ("cpu.max", "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"):
    try:
        limit[name] = open("/sys/fs/cgroup/" + name).read().strip()
    except OSError:
        pass
print(json.dumps({
    "ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()],
    "writes": writes,
    "root_options": root_options,
    "cpus": len(os.sched_getaffinity(0)),
    "cgroup": limit,
}))
"""


@dataclass
class Manifest:
    """What deploy/kubernetes.yaml says about the container, read with yaml.safe_load_all."""

    pod: dict
    container: dict

    @classmethod
    def read(cls, bundle: Path) -> Manifest:
        kinds = {d["kind"]: d for d in yaml.safe_load_all((bundle / "deploy" / "kubernetes.yaml").read_text())}
        pod = kinds["Deployment"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        return cls(pod, container)

    @property
    def uid(self) -> int:
        return self.pod["securityContext"]["runAsUser"]

    @property
    def gid(self) -> int:
        return self.pod["securityContext"]["runAsGroup"]

    @property
    def env(self) -> dict[str, str]:
        assert all(set(item) == {"name", "value"} for item in self.container["env"]), self.container["env"]
        return {item["name"]: item["value"] for item in self.container["env"]}

    @property
    def grace_seconds(self) -> int:
        return self.pod["terminationGracePeriodSeconds"]

    def probe(self, kind: str) -> dict:
        return self.container[kind]

    def probe_port(self, kind: str) -> int:
        port = self.probe(kind)["httpGet"]["port"]
        if isinstance(port, int):
            return port
        return next(p["containerPort"] for p in self.container["ports"] if p["name"] == port)

    @property
    def cpu_limit_millicores(self) -> int:
        quantity = str(self.container["resources"]["limits"]["cpu"])
        return int(quantity[:-1]) if quantity.endswith("m") else round(float(quantity) * 1000)


@dataclass
class Deployed:
    """The server as the manifest starts it: PID 1 of its namespaces, on `port`."""

    process: subprocess.Popen  # unshare, which waits for PID 1 and exits with its status
    pid: int  # PID 1's pid on this machine
    port: int
    env: dict[str, str]
    log: Path
    started: float
    cpu_limit: tuple[str, Path] | None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def inside(self, argv, user: tuple[int, int] | None) -> subprocess.CompletedProcess:
        """ARGV in the server's mount and PID namespaces and root, with its env: as USER (uid,
        gid, no supplementary groups), or as root when USER is None."""
        ids = ["--setuid", str(user[0]), "--setgid", str(user[1])] if user else []
        env = [f"{key}={value}" for key, value in self.env.items()]
        return subprocess.run(
            ["nsenter", "--target", str(self.pid), "--mount", "--pid", "--root", "--wd", *ids, "--",
             "env", "-i", *env, *argv],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip


def require_tools() -> None:
    missing = [tool for tool in ("unshare", "nsenter", "mount") if not shutil.which(tool)]
    if missing:
        message = f"{', '.join(missing)} not installed (Debian: util-linux, mount)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A project whose run() sleeps when asked: registered, saved."""
    work = tmp_path_factory.mktemp("deploy-runtime") / "project"
    work.mkdir()
    home = work.parent / "registry"
    (work / "answer.json").write_text(json.dumps({"answer": 42}))
    (work / "score.py").write_text(SCORE)
    (work / "requirements.txt").write_text("# only the standard library\n")
    (work / "bundler.toml").write_text(BUNDLER_TOML)
    assert bundler("register", "answer.json", "--name", "slow", cwd=work, home=home).stdout.strip() == "slow:1"
    bundler("save", "imagefiles", cwd=work, home=home)
    return work / "imagefiles"


@pytest.fixture(scope="module")
def rootfs(engine, bundle):
    """The built image's file system, mounted (read-write here: the container gets it read-only)."""
    if engine.name != "podman":
        pytest.skip("this test makes the read-only container from buildah's mount of the image (podman storage)")
    require_root("the container is made with mount and PID namespaces, bind mounts and chroot")
    require_tools()
    build = engine.build(bundle, TAG)
    MEASUREMENTS["build (deploy runtime image)"] = f"{build.seconds:.1f} s"
    container = engine.run(*engine.buildah, "from", "--pull-never", TAG).stdout.strip().splitlines()[-1]
    try:
        mounted = Path(engine.run(*engine.buildah, "mount", container).stdout.strip().splitlines()[-1])
        yield engine.config(TAG), mounted
    finally:
        engine.run(*engine.buildah, "umount", container, check=False)
        engine.run(*engine.buildah, "rm", container, check=False)
        engine.remove_image(TAG)


@pytest.fixture(scope="module")
def manifest(bundle) -> Manifest:
    return Manifest.read(bundle)


@pytest.fixture
def deployed(rootfs, manifest, tmp_path):
    config, mounted = rootfs
    port = free_port()
    # The host's network is shared: the server listens on a free port, not the manifest's 5001.
    assert manifest.env["BUNDLER_PORT"] == str(manifest.probe_port("startupProbe")) == "5001"
    env = dict(item.split("=", 1) for item in config["Env"])
    env.update(manifest.env)  # the container's env overrides the image's ENV, as in a pod
    env["BUNDLER_PORT"] = str(port)
    env.setdefault("HOME", home_of(mounted, manifest.uid))
    env.setdefault("HOSTNAME", "slow-7d9f8c6b5-x2x7q")
    (tmp_path / "root").mkdir()
    log = tmp_path / "server.log"
    with cpu_limit(manifest.cpu_limit_millicores) as limit:
        launch = {
            "rootfs": str(mounted),
            "root": str(tmp_path / "root"),
            "workdir": config.get("WorkingDir") or "/",
            "uid": manifest.uid,
            "gid": manifest.gid,
            "env": env,
            "argv": (config.get("Entrypoint") or []) + (config.get("Cmd") or []),
            "cgroup": [limit[0], str(limit[1])] if limit else None,
        }
        (tmp_path / "launch.json").write_text(json.dumps(launch))
        (tmp_path / "launcher.py").write_text(LAUNCHER)
        procs = limit[1] / "cgroup.procs" if limit else None
        with open(log, "w") as out:
            process = subprocess.Popen(
                ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private",
                 sys.executable, "-I", str(tmp_path / "launcher.py"), str(tmp_path / "launch.json")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                # Into the limited cgroup before unshare runs: PID 1 and its workers inherit it.
                preexec_fn=(lambda: procs.write_text(str(os.getpid()))) if procs else None,
            )  # fmt: skip
        started = time.monotonic()
        try:
            pid = wait_for(lambda: next(iter(children(process.pid)), None), 10, "PID 1 of the container", process, log)
            yield Deployed(process, pid, port, env, log, started, limit)
        finally:
            if process.poll() is None:
                # unshare and PID 1 (its process group); with PID 1 the kernel ends the rest of
                # its namespace (workers, probes).
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)


def home_of(rootfs: Path, uid: int) -> str:
    """HOME as a container runtime sets it: the user's entry in the image's /etc/passwd, else /."""
    for line in (rootfs / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[2] == str(uid):
            return fields[5]
    return "/"


@contextlib.contextmanager
def cpu_limit(millicores: int):
    """A cgroup of its own with resources.limits.cpu as its CFS quota (per 100 ms), as the
    kubelet sets it: cgroup v2's cpu.max, or v1's cpu controller. Yields (kind, folder), or
    None where this kernel lets us make neither (then the server sees no CPU limit)."""
    quota = millicores * 100  # microseconds per period of 100000
    name = f"bundler-test-{uuid.uuid4().hex[:12]}"
    unified = Path("/sys/fs/cgroup")
    control = unified / "cgroup.subtree_control"
    if control.exists() and "cpu" in control.read_text().split():
        kind, folder, settings = "v2", unified / name, {"cpu.max": f"{quota} 100000"}
    elif (unified / "cpu" / "cpu.cfs_quota_us").exists():
        kind, folder = "v1", unified / "cpu" / name
        settings = {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": str(quota)}
    else:
        yield None
        return
    folder.mkdir()
    try:
        for file, value in settings.items():
            (folder / file).write_text(value)
        yield kind, folder
    finally:
        for _ in range(100):  # empty once PID 1's namespace is gone
            try:
                folder.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def wait_for(check, seconds, what, process=None, log=None):
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the container's command exited ({process.returncode}):\n{log.read_text()}")
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s" + (f"\n{log.read_text()}" if log else "")
        time.sleep(0.05)


def probe_answers(server: Deployed, manifest: Manifest, kind: str):
    """The status of GET on the probe's path, with the probe's timeout (Kubernetes' default 1 s)."""
    probe = manifest.probe(kind)
    try:
        return http("GET", server.port, probe["httpGet"]["path"], timeout=probe.get("timeoutSeconds", 1))[0]
    except OSError:
        return None


def started(server: Deployed, manifest: Manifest) -> float:
    """Seconds until the startup probe's path answered 200, within the allowance it gives."""
    probe = manifest.probe("startupProbe")
    allowance = probe["periodSeconds"] * probe["failureThreshold"]
    wait_for(lambda: probe_answers(server, manifest, "startupProbe") == 200, allowance, "startup probe",
             server.process, server.log)  # fmt: skip
    return time.monotonic() - server.started


def test_the_root_is_read_only_and_only_tmp_is_writable(deployed, manifest):
    started(deployed, manifest)
    uid, gid = manifest.uid, manifest.gid
    assert (uid, gid) == (10001, 10001)
    for pid in [deployed.pid, *children(deployed.pid)]:  # the master and its workers
        facts = status(pid)
        assert facts["Uid"].split() == [str(uid)] * 4, facts
        assert facts["Gid"].split() == [str(gid)] * 4, facts
        assert facts["Groups"] == "", facts
        assert facts["NoNewPrivs"] == "1", facts
        assert {facts[key] for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == {"0000000000000000"}

    as_user = deployed.inside(["python", "-c", PROBE], (uid, gid))
    assert as_user.returncode == 0, as_user.stdout + as_user.stderr
    seen = json.loads(as_user.stdout)
    assert seen["ids"] == [uid, uid, gid, gid, []]
    assert "ro" in seen["root_options"][0].split(","), seen["root_options"]
    read_only = {"/": "EROFS", "/var/azureml-app": "EROFS", "/opt": "EROFS", "/opt/venv": "EROFS", "/etc": "EROFS"}
    writable = {"/tmp": "written", "/dev/shm": "written"}
    # Opening an existing file for writing checks its permissions first: the image's files
    # are not the user's to write (EACCES) even before the read-only root refuses.
    assert seen["writes"] == {**read_only, **writable, "/var/azureml-app/score.py": "EACCES"}

    # Root, whom no permission stops, is refused too: the file system itself is read-only.
    as_root = deployed.inside(["python", "-c", PROBE], None)
    assert as_root.returncode == 0, as_root.stdout + as_root.stderr
    assert json.loads(as_root.stdout)["ids"] == [0, 0, 0, 0, []]
    assert json.loads(as_root.stdout)["writes"] == {**read_only, **writable, "/var/azureml-app/score.py": "EROFS"}

    # The server itself tried to write nowhere else: no error of that kind in its log.
    for sign in ("Read-only file system", "Permission denied", "Traceback", errno.errorcode[errno.EROFS]):
        assert sign not in deployed.output(), deployed.output()


def test_the_probes_path_answers_within_the_startup_allowance(deployed, manifest):
    seconds = started(deployed, manifest)
    MEASUREMENTS["deploy runtime: startup probe answered"] = f"{seconds:.1f} s after start"
    paths = {manifest.probe(kind)["httpGet"]["path"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert paths == {"/"}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert manifest.probe_port(kind) == 5001
        assert probe_answers(deployed, manifest, kind) == 200, kind
    status_, body = http("POST", deployed.port, "/score", json.dumps({"sleep": 0}).encode(), JSON)
    assert (status_, json.loads(body)) == (200, {"answer": 42, "token": None, "slept": 0})


def test_workers_auto_is_one_per_cpu_of_the_limit(deployed, manifest):
    started(deployed, manifest)
    assert manifest.env["BUNDLER_WORKERS"] == "auto"
    seen = json.loads(deployed.inside(["python", "-c", PROBE], (manifest.uid, manifest.gid)).stdout)
    if deployed.cpu_limit:
        # The manifest's limit, as the server sees it in its own cgroup.
        cgroup = seen["cgroup"]
        quota = cgroup.get("cpu.max") or f"{cgroup['cpu/cpu.cfs_quota_us']} {cgroup['cpu/cpu.cfs_period_us']}"
        assert quota == f"{manifest.cpu_limit_millicores * 100} 100000", seen["cgroup"]
        expected = min(seen["cpus"], math.ceil(manifest.cpu_limit_millicores / 1000))
    else:
        # This machine lets us make no cgroup with a CPU limit: the server sees none, and
        # "auto" means every CPU it may run on.
        assert seen["cgroup"].get("cpu.max", "max").startswith("max"), seen["cgroup"]
        expected = seen["cpus"]

    def workers_ready():
        booted = set(re.findall(r"Booting worker with pid: (\d+)", deployed.output()))
        ready = set(re.findall(r"Worker (\d+) ready on port", deployed.output()))
        return booted and booted == ready and booted

    booted = wait_for(workers_ready, 60, "every worker ready", deployed.process, deployed.log)
    time.sleep(1)  # none more to come
    assert workers_ready() == booted
    assert len(booted) == len(children(deployed.pid)) == expected, deployed.output()
    limit = f"a limit of {manifest.cpu_limit_millicores}m CPU" if deployed.cpu_limit else "no CPU limit"
    MEASUREMENTS["deploy runtime: BUNDLER_WORKERS=auto"] = f"{len(booted)} worker(s), {limit}, {seen['cpus']} CPUs"


def post_in_thread(port: int, request: dict, timeout: float) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def post():
        began = time.monotonic()
        try:
            result["response"] = http("POST", port, "/score", json.dumps(request).encode(), JSON, timeout=timeout)
        except (OSError, urllib.error.HTTPError) as exc:
            result["error"] = exc
        result["ended"] = time.monotonic()
        result["seconds"] = result["ended"] - began

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, result


def new_request(port: int) -> tuple[str, float]:
    """What a new client gets ('refused', an error, or the status it was answered), and when."""
    try:
        outcome = str(http("GET", port, "/", timeout=30)[0])
    except urllib.error.URLError as exc:
        outcome = "refused" if isinstance(exc.reason, ConnectionRefusedError) else f"error: {exc.reason!r}"
    except OSError as exc:
        outcome = "refused" if isinstance(exc, ConnectionRefusedError) else f"error: {exc!r}"
    return outcome, time.monotonic()


def test_sigterm_drains_the_request_in_flight(deployed, manifest):
    started(deployed, manifest)
    grace = manifest.grace_seconds
    assert grace == int(manifest.env["BUNDLER_SCORING_TIMEOUT"]) + 15
    token = uuid.uuid4().hex
    thread, result = post_in_thread(deployed.port, {"sleep": SLOW_SECONDS, "token": token}, grace + 10)
    mark = Path(f"/proc/{deployed.pid}/root/tmp/in-flight-{token}")  # the container's /tmp, from here
    wait_for(mark.exists, 30, "the slow request reaching run()", deployed.process, deployed.log)

    workers = children(deployed.pid)
    assert re.search(r"Listening at: \S+ \(1\)", deployed.output()), deployed.output()  # gunicorn's master is PID 1
    os.kill(deployed.pid, signal.SIGTERM)  # as the kubelet does: to PID 1
    sigterm = time.monotonic()
    time.sleep(0.5)
    during, answered = new_request(deployed.port)
    deployed.process.wait(grace)  # raises TimeoutExpired if the server outlives the grace period
    exited = time.monotonic() - sigterm
    thread.join(10)

    assert "response" in result, (result, deployed.output())
    status_, body = result["response"]
    assert (status_, json.loads(body)) == (200, {"answer": 42, "token": token, "slept": SLOW_SECONDS})
    assert result["ended"] > sigterm + SLOW_SECONDS - 1  # it ran to its end after the SIGTERM
    assert deployed.process.returncode == 0, deployed.output()  # PID 1 exited 0: a clean shutdown
    assert exited < grace, deployed.output()
    assert re.search(r"Handling signal: term.*POST /score HTTP/1.1\" 200.*Shutting down: Master", deployed.output(),
                     re.S), deployed.output()  # fmt: skip
    # New connections while it drains are NOT refused: the master closes its listening socket
    # at SIGTERM, but the worker busy in run() (on its event loop's thread) still holds the
    # same socket, and once run() returns it accepts what waited in the backlog and answers
    # it before it shuts down. So a request sent during the drain is answered (by the only
    # worker: after the one in flight); only once the server has exited is one refused.
    assert during == "200", deployed.output()
    if len(workers) == 1:
        assert answered >= result["ended"]
    assert new_request(deployed.port)[0] == "refused"
    MEASUREMENTS["deploy runtime: SIGTERM to exit, one request in flight"] = f"{exited:.1f} s (grace period {grace} s)"


class NotDrained(AssertionError):
    """The request in flight at SIGTERM got no answer, or not its own."""


def test_sigterm_drains_a_request_as_long_as_the_scoring_timeout_allows(deployed, manifest):
    """The manifest's promise: the grace period (scoring timeout + 15 s) outlasts any run()
    the scoring timeout allows, so SIGTERM lets such a request finish. This one takes 35 s
    of the 60 the scoring timeout allows."""
    started(deployed, manifest)
    grace = manifest.grace_seconds
    seconds = LONG_SECONDS
    assert seconds < float(manifest.env["BUNDLER_SCORING_TIMEOUT"]) < grace
    token = uuid.uuid4().hex
    thread, result = post_in_thread(deployed.port, {"sleep": seconds, "token": token}, grace + 10)
    mark = Path(f"/proc/{deployed.pid}/root/tmp/in-flight-{token}")
    wait_for(mark.exists, 30, "the slow request reaching run()", deployed.process, deployed.log)
    os.kill(deployed.pid, signal.SIGTERM)
    sigterm = time.monotonic()
    deployed.process.wait(grace)
    exited = time.monotonic() - sigterm
    thread.join(10)
    expected = (200, {"answer": 42, "token": token, "slept": seconds})
    if "response" not in result or (result["response"][0], json.loads(result["response"][1])) != expected:
        raise NotDrained(
            f"{result.get('response') or result.get('error')!r} after {result['seconds']:.1f} s; "
            f"the server exited {exited:.1f} s after SIGTERM ({deployed.process.returncode}):\n{deployed.output()}"
        )
    assert deployed.process.returncode == 0, deployed.output()
