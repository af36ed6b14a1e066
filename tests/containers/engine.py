"""Build and run images: a real Docker engine when one answers, else podman + buildah.

podman/buildah follow ../shared/container-testing.md: vfs storage, chroot isolation, and
`buildah run` to start the image's own command (podman run does not work on the CI
machines). Either way a test sees the same operations: build, config, start, exec, size.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE_SCRIPT = REPO / ".ci" / "make-base-image.sh"


@dataclass
class Build:
    tag: str
    output: str
    seconds: float


@dataclass
class Running:
    engine: "Engine"
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
            raise AssertionError(f"{' '.join(map(str, args))} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def build(self, context: Path, tag: str, no_cache: bool = False, env_extra=None) -> Build:
        started = time.monotonic()
        result = self.run(*self.build_command(context, tag, no_cache), env={**os.environ, **(env_extra or {})})
        return Build(tag, result.stdout + result.stderr, time.monotonic() - started)


class PodmanEngine(Engine):
    name = "podman"
    podman = ("podman", "--storage-driver", "vfs")
    buildah = ("buildah", "--storage-driver", "vfs")

    def ensure_base_image(self) -> None:
        self.run("bash", BASE_IMAGE_SCRIPT)

    def build_command(self, context, tag, no_cache):
        # docker format keeps HEALTHCHECK (the OCI format has no field for it).
        return [*self.podman, "build", "--pull=never", "--isolation", "chroot", "--format", "docker",
                *(["--no-cache"] if no_cache else []), "-t", tag, str(context)]

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
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        return running

    def exec(self, running: Running, argv, env=None, **kwargs):
        env_args = [a for k, v in {**running.env, **(env or {})}.items() for a in ("--env", f"{k}={v}")]
        return self.run(*self.buildah, "run", "--isolation", "chroot", *env_args, running.handle, "--", *argv,
                        check=False, **kwargs)

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
        running.handle = self.run("docker", "run", "-d", "-p", f"127.0.0.1:{port}:{port}", *env_args, tag).stdout.strip()
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
        return PodmanEngine()
    return None


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
