"""The local image engine (docker, else podman): build, log in, push, and run an image.

A convenience for people who have one: it adds nothing the Dockerfile lacks, so the bundle
stays buildable with a plain `docker build`. A password reaches the engine only on its
standard input (`login --password-stdin`), never in an argument list or a file of ours.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bundler.errors import BundlerError


@dataclass(frozen=True)
class Engine:
    path: str

    @property
    def name(self) -> str:
        return Path(self.path).name

    def build(self, bundle: Path, tag: str, output=None, on_line=None) -> None:
        """Build BUNDLE as TAG. The engine's output goes to `output` (a file), or line by line to
        `on_line`, else streams through as it happens."""
        # podman's default OCI format has no field for HEALTHCHECK; docker's format keeps it.
        keep_healthcheck = ("--format", "docker") if self.name == "podman" else ()
        argv = [self.path, "build", *keep_healthcheck, "--tag", tag, str(bundle)]
        if on_line is None:
            code = subprocess.run(
                argv, stdout=output, stderr=subprocess.STDOUT if output is not None else None
            ).returncode
        else:
            with subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
            ) as process:
                for line in process.stdout:
                    on_line(line)
            code = process.returncode
        if code != 0:
            where = "its output is above" if output is None and on_line is None else "see the build log"
            raise BundlerError(f"{self.name} build failed (exit {code}); {where}")

    def run_detached(self, image: str, name: str, port: int, container_port: int) -> None:
        """Start IMAGE as container NAME, its port published on 127.0.0.1:PORT."""
        self._checked(
            "run",
            "--detach",
            "--name",
            name,
            "--publish",
            f"127.0.0.1:{port}:{container_port}",
            image,
            doing=f"start {image}",
        )

    def logs(self, name: str) -> str:
        result = subprocess.run([self.path, "logs", name], capture_output=True, text=True, errors="replace")
        return result.stdout + result.stderr

    def remove(self, name: str) -> None:
        self._checked("rm", "--force", name, doing=f"remove the container {name}")

    def login(self, address: str, username: str, password: str) -> None:
        result = subprocess.run(
            [self.path, "login", address, "--username", username, "--password-stdin"],
            input=password,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BundlerError(
                f"{self.name} login to {address} as {username} failed: {_last_line(result)}; "
                "check the user name and the password in its variable"
            )

    def push(self, local: str, remote: str) -> str:
        """Tag LOCAL as REMOTE, push it, and return the pushed image's digest (sha256:...)."""
        self._checked("tag", local, remote, doing=f"tag {local} as {remote}")
        if self.name == "podman":
            with tempfile.TemporaryDirectory(prefix="bundler-push-") as scratch:
                digest_file = Path(scratch) / "digest"
                self._checked("push", "--digestfile", digest_file, remote, doing=f"push {remote}")
                return digest_file.read_text().strip()
        self._checked("push", remote, doing=f"push {remote}")
        return self._repo_digest(remote)

    def has_image(self, reference: str) -> bool:
        result = subprocess.run([self.path, "image", "inspect", reference], capture_output=True)
        return result.returncode == 0

    def image_id(self, reference: str) -> str | None:
        """The image's ID (sha256:... of its configuration, as `docker load` prints it), or None."""
        result = subprocess.run(
            [self.path, "image", "inspect", "--format", "{{.Id}}", reference], capture_output=True, text=True
        )
        if result.returncode != 0 or not result.stdout.strip():
            return None
        image_id = result.stdout.strip().splitlines()[0]
        return image_id if image_id.startswith("sha256:") else f"sha256:{image_id}"

    def save_image(self, reference: str, target: Path) -> None:
        """REFERENCE as a docker-archive (which `docker load` and `podman load` both read)."""
        docker_format = ("--format", "docker-archive") if self.name == "podman" else ()
        self._checked("save", *docker_format, "--output", target, reference, doing=f"export {reference}")

    def _repo_digest(self, remote: str) -> str:
        """docker records what a push returned as the image's RepoDigests: repository@sha256:..."""
        out = self._checked("image", "inspect", "--format", "{{json .RepoDigests}}", remote, doing="read the digest")
        pushed_to = repository(remote)
        try:
            recorded = json.loads(out or "[]") or []
        except ValueError:
            recorded = []
        for item in recorded if isinstance(recorded, list) else []:
            name, _, digest = item.partition("@")
            if name == pushed_to and digest:
                return digest
        raise BundlerError(f"{self.name} pushed {remote} but recorded no digest for it; see `{self.name} inspect`")

    def _checked(self, *args, doing: str) -> str:
        result = subprocess.run([self.path, *map(str, args)], capture_output=True, text=True)
        if result.returncode != 0:
            raise BundlerError(f"{self.name} could not {doing}: {_last_line(result)}")
        return result.stdout


def find() -> Engine:
    """docker when its engine answers, else podman when installed; else a clear error."""
    docker = docker_engine()
    if docker is not None:
        return docker
    podman = shutil.which("podman")
    if podman:
        return Engine(podman)
    if shutil.which("docker"):
        raise BundlerError(
            "docker is installed but its engine does not answer (is the daemon running?), "
            "and podman is not installed; start Docker or install podman"
        )
    raise BundlerError("no image builder found: install Docker or podman, or copy the bundle to a machine that has one")


def docker_engine() -> Engine | None:
    """docker, when its engine answers: the one engine bundler starts containers with (podman
    cannot run them on every machine; where it cannot, a local server is the honest fallback)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0:
        return Engine(docker)
    return None


def repository(reference: str) -> str:
    """host/path of host/path:tag (a port's colon comes before the last slash)."""
    head, _, last = reference.rpartition("/")
    name = last.split(":", 1)[0].split("@", 1)[0]
    return f"{head}/{name}" if head else name


def _last_line(result: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (result.stderr or result.stdout or "").splitlines() if line.strip()]
    return " ".join(lines[-1].split()) if lines else f"exit {result.returncode}"
