"""Build and run images: a real Docker engine when one answers, else podman + buildah.

podman/buildah follow ../shared/container-testing.md: chroot isolation, and `buildah run`
to start the image's own command (podman run does not work on the CI machines). Storage is
overlay where the kernel mounts it (as root it does here), else the recipe's vfs: vfs copies
the whole image at every build step, which made a cached rebuild cost most of a cold build.
Each driver keeps its own root, so their databases never mix. Either way a test sees the
same operations: build, config, start, exec, size.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cache_dir import CACHE

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE_SCRIPT = REPO / ".ci" / "make-base-image.sh"
OVERLAY_ROOT = CACHE / "containers-overlay"
OVERLAY_RUNROOT = Path("/run/bundler-tests-containers")


@dataclass
class Build:
    tag: str
    output: str
    seconds: float


@dataclass
class Running:
    engine: Engine
    tag: str
    marker: str
    handle: object = None
    process: subprocess.Popen | None = None
    env: dict = field(default_factory=dict)

    def exec(self, argv, **kwargs) -> subprocess.CompletedProcess:
        return self.engine.exec(self, argv, **kwargs)

    def stop(self) -> None:
        self.engine.stop(self)


class Engine:
    name = "?"

    def run(self, *args, check=True, **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def build(self, context: Path, tag: str, no_cache: bool = False, env_extra=None) -> Build:
        started = time.monotonic()
        result = self.run(*self.build_command(context, tag, no_cache), env={**os.environ, **(env_extra or {})})
        return Build(tag, result.stdout + result.stderr, time.monotonic() - started)


class PodmanEngine(Engine):
    name = "podman"

    def __init__(self, overlay: bool):
        self.storage = "overlay" if overlay else "vfs"
        flags = ("--root", str(OVERLAY_ROOT / "graph"), "--runroot", str(OVERLAY_RUNROOT)) if overlay else ()
        self.storage_flags = (*flags, "--storage-driver", self.storage)
        self.podman = ("podman", *self.storage_flags)
        self.buildah = ("buildah", *self.storage_flags)

    def ensure_base_image(self) -> None:
        self.run("bash", BASE_IMAGE_SCRIPT, env={**os.environ, "BUNDLER_PODMAN_STORAGE": " ".join(self.storage_flags)})

    def user_env(self) -> dict:
        """The environment in which a plain `podman build`, as a user types it, uses this storage."""
        env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
        if self.storage == "vfs":
            return {**env, "STORAGE_DRIVER": "vfs"}
        conf = OVERLAY_ROOT / "storage.conf"
        conf.write_text(
            f'[storage]\ndriver = "overlay"\ngraphroot = "{OVERLAY_ROOT / "graph"}"\nrunroot = "{OVERLAY_RUNROOT}"\n'
        )
        return {**env, "CONTAINERS_STORAGE_CONF": str(conf)}

    def build_command(self, context, tag, no_cache):
        # docker format keeps HEALTHCHECK (the OCI format has no field for it).
        return [
            *self.podman,
            "build",
            "--pull=never",
            "--isolation",
            "chroot",
            "--format",
            "docker",
            *(["--no-cache"] if no_cache else []),
            "-t",
            tag,
            str(context),
        ]

    def config(self, tag) -> dict:
        out = self.run(*self.podman, "image", "inspect", tag, "--format", "{{json .Config}}").stdout
        config = json.loads(out)
        if not config.get("Healthcheck"):
            health = self.run(*self.podman, "image", "inspect", tag, "--format", "{{json .HealthCheck}}").stdout
            config["Healthcheck"] = json.loads(health) if health.strip() not in ("", "null") else None
        return config

    def size(self, tag) -> int:
        return int(self.run(*self.podman, "image", "inspect", tag, "--format", "{{.Size}}").stdout.strip())

    def start(self, tag, env: dict) -> Running:
        config = self.config(tag)
        argv = (config.get("Entrypoint") or []) + (config.get("Cmd") or [])
        container = self.run(*self.buildah, "from", "--pull-never", tag).stdout.strip().splitlines()[-1]
        running = Running(self, tag, uuid.uuid4().hex, handle=container, env=env)
        env_args = [a for k, v in {**env, "BUNDLER_TEST_MARKER": running.marker}.items() for a in ("--env", f"{k}={v}")]
        running.process = subprocess.Popen(
            [*self.buildah, "run", "--isolation", "chroot", *env_args, container, "--", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        return running

    def exec(self, running: Running, argv, env=None, **kwargs):
        env_args = [a for k, v in {**running.env, **(env or {})}.items() for a in ("--env", f"{k}={v}")]
        return self.run(
            *self.buildah, "run", "--isolation", "chroot", *env_args, running.handle, "--", *argv, check=False, **kwargs
        )

    def stop(self, running: Running) -> None:
        # buildah run's chroot child may outlive the buildah process: find it by its marker.
        for pid in _pids_with_env(f"BUNDLER_TEST_MARKER={running.marker}"):
            _signal(pid, signal.SIGTERM)
        if running.process is not None:
            try:
                running.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(running.process.pid, signal.SIGKILL)
        for pid in _pids_with_env(f"BUNDLER_TEST_MARKER={running.marker}"):
            _signal(pid, signal.SIGKILL)
        self.run(*self.buildah, "rm", running.handle, check=False)

    def remove_image(self, tag) -> None:
        self.run(*self.podman, "rmi", "-f", tag, check=False)


class DockerEngine(Engine):
    name = "docker"

    def ensure_base_image(self) -> None:
        pass  # a real engine pulls python:3.11-slim itself

    def build_command(self, context, tag, no_cache):
        return ["docker", "build", *(["--no-cache"] if no_cache else []), "-t", tag, str(context)]

    def config(self, tag) -> dict:
        return json.loads(self.run("docker", "image", "inspect", tag, "--format", "{{json .Config}}").stdout)

    def size(self, tag) -> int:
        return int(self.run("docker", "image", "inspect", tag, "--format", "{{.Size}}").stdout.strip())

    def start(self, tag, env: dict) -> Running:
        running = Running(self, tag, uuid.uuid4().hex, env=env)
        env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        port = env["BUNDLER_PORT"]
        running.handle = self.run(
            "docker", "run", "-d", "-p", f"127.0.0.1:{port}:{port}", *env_args, tag
        ).stdout.strip()
        return running

    def exec(self, running: Running, argv, env=None, **kwargs):
        env_args = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
        return self.run("docker", "exec", *env_args, running.handle, *argv, check=False, **kwargs)

    def stop(self, running: Running) -> None:
        self.run("docker", "rm", "-f", running.handle, check=False)

    def remove_image(self, tag) -> None:
        self.run("docker", "rmi", "-f", tag, check=False)


def detect() -> Engine | None:
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return DockerEngine()
    if all(shutil.which(tool) for tool in ("podman", "buildah", "debootstrap")):
        wanted = os.environ.get("BUNDLER_TEST_STORAGE", "")  # "vfs" or "overlay" to choose; else the probe
        return PodmanEngine(overlay=wanted == "overlay" or (wanted != "vfs" and _overlay_mounts()))
    return None


def _overlay_mounts() -> bool:
    """Whether this kernel lets us mount overlayfs here: try it on three empty folders."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    OVERLAY_ROOT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=OVERLAY_ROOT) as probe:
        lower, upper, work, merged = (Path(probe, name) for name in ("lower", "upper", "work", "merged"))
        for folder in (lower, upper, work, merged):
            folder.mkdir()
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        if (
            subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)], capture_output=True
            ).returncode
            != 0
        ):
            return False
        subprocess.run(["umount", str(merged)], capture_output=True)
        return True


def _pids_with_env(needle: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _signal(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
