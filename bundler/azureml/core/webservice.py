"""Local web services: Model.deploy with LocalWebservice.deploy_configuration(port=...).

A service lives as long as the Python that deployed it: `delete()` stops it, and so does
that Python's exit (a container is removed; a local server gets SIGTERM, also when the
Python is killed, through the kernel's parent-death signal).

Where a Docker engine answers, the package's image is built and run as a container
(`docker run -p 127.0.0.1:PORT:5001`). Where none does (podman cannot run containers on
every machine, and this one may have no engine at all), the bundle's own server runs in this
Python, as `bundler serve` runs it; the deploy says which. ACI and AKS are Azure's cloud:
their configurations raise an error that says how to run the image elsewhere.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bundler import api, layout, syscalls
from bundler.azureml.exceptions import CLOUD, RefusingObject, UserErrorException, WebserviceException, refuse

_LIVE: dict[str, LocalWebservice] = {}  # the services this Python deployed, by name

_RUN_THE_IMAGE = (
    "build the image with Model.package(ws, [model], inference_config), wait_for_creation() and pull(), then "
    "run it where you like: docker run -p 6789:5001 IMAGE, or push it (bundler build --push DIR) and run it "
    "from a Kubernetes Deployment"
)


class LocalWebserviceDeploymentConfiguration:
    def __init__(self, port: int | None = None):
        self.port = port


class _CloudService(RefusingObject):
    @classmethod
    def deploy_configuration(cls, *args, **kwargs):
        raise refuse(
            f"{cls.__name__}.deploy_configuration", f"{cls.__name__} is an Azure cloud service; {_RUN_THE_IMAGE}"
        )


class AciWebservice(_CloudService):
    pass


class AksWebservice(_CloudService):
    pass


class Webservice(RefusingObject):
    """Webservice(ws, name): a local service this Python deployed."""

    REFUSED = {"list": f"{CLOUD}; local services live as long as the Python that deployed them"}

    def __new__(cls, workspace, name):
        if name not in _LIVE:
            raise WebserviceException(f"no local web service named {name!r} runs from this Python; deploy it first")
        return _LIVE[name]


class LocalWebservice(RefusingObject):
    REFUSED = {
        "update": "delete() the service and Model.deploy again",
        "reload": "delete() the service and Model.deploy again",
        "get_keys": "a local service has no keys",
        "regen_key": "a local service has no keys",
        "get_token": "a local service has no tokens",
    }

    @staticmethod
    def deploy_configuration(port: int | None = None) -> LocalWebserviceDeploymentConfiguration:
        return LocalWebserviceDeploymentConfiguration(port)

    def __init__(self, name: str, port: int, mode: str, scratch: tempfile.TemporaryDirectory):
        self.name, self.port, self.mode = name, port, mode
        self.compute_type = "Local"
        self.state = "Transitioning"
        self._scratch = scratch
        self._log_path = Path(scratch.name, "service.log")
        self._process: subprocess.Popen | None = None
        self._engine = None

    @property
    def scoring_uri(self) -> str:
        return f"http://localhost:{self.port}/score"

    @property
    def swagger_uri(self) -> str:
        return f"http://localhost:{self.port}/swagger.json"

    def wait_for_deployment(self, show_output: bool = False, timeout_sec: float = 300) -> None:
        deadline = time.monotonic() + timeout_sec
        while True:
            # Its own server first: whatever else may answer on the port is not this service.
            if self._process is not None and self._process.poll() is not None:
                self.state = "Failed"
                raise WebserviceException(
                    f"local service {self.name} stopped (exit {self._process.returncode}); its log ends: "
                    + " | ".join(self.get_logs().strip().splitlines()[-3:])
                )
            if self._answers():
                self.state = "Healthy"
                if show_output:
                    print(f"Local webservice is running at {self.scoring_uri} ({self.mode})", flush=True)
                return
            if time.monotonic() > deadline:
                self.state = "Failed"
                raise WebserviceException(
                    f"local service {self.name} did not answer within {timeout_sec} s; see get_logs()"
                )
            time.sleep(0.2)

    def run(self, input_data):
        """POST input_data (text, bytes, or an object sent as JSON) to /score; the answer,
        parsed when it is JSON."""
        body = (
            input_data
            if isinstance(input_data, bytes)
            else (input_data.encode() if isinstance(input_data, str) else json.dumps(input_data).encode())
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/score",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # localhost, never through a proxy
        try:
            with opener.open(request, timeout=300) as response:
                answer = response.read()
        except urllib.error.HTTPError as exc:
            raise WebserviceException(
                f"{self.scoring_uri} answered {exc.code}: {exc.read().decode(errors='replace')}"
            ) from None
        except OSError as exc:
            raise WebserviceException(f"{self.scoring_uri} did not answer ({exc}); is the service running?") from None
        try:
            return json.loads(answer)
        except ValueError:
            return answer.decode(errors="replace")

    def get_logs(self, num_lines: int = 5000) -> str:
        if self._engine is not None:
            text = self._engine.logs(self.name)
        else:
            text = self._log_path.read_text(errors="replace") if self._log_path.exists() else ""
        return "\n".join(text.splitlines()[-num_lines:]) + ("\n" if text else "")

    def delete(self) -> None:
        if self._engine is not None:
            self._engine.remove(self.name)
        elif self._process is not None and self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)  # the server drains its requests, then its workers stop
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self.state = "Deleted"
        _LIVE.pop(self.name, None)
        self._scratch.cleanup()

    def _answers(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://127.0.0.1:{self.port}/", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def __repr__(self) -> str:
        return f"LocalWebservice(name={self.name!r}, scoring_uri={self.scoring_uri!r}, mode={self.mode!r})"


def deploy_locally(workspace, name, models, inference_config, deployment_config, overwrite, show_output):
    from bundler import engine as engines
    from bundler.azureml.core.package import package_inputs

    if inference_config is None:
        raise refuse(
            "Model.deploy without an inference_config", "give InferenceConfig(entry_script=..., environment=...)"
        )
    if not isinstance(deployment_config, LocalWebserviceDeploymentConfiguration):
        raise refuse(
            f"Model.deploy with {type(deployment_config).__name__}",
            f"deploy with LocalWebservice.deploy_configuration(port=6789), or {_RUN_THE_IMAGE}",
        )
    if name in _LIVE:
        if not overwrite:
            raise WebserviceException(
                f"a local web service named {name!r} runs already; delete() it or pass overwrite=True"
            )
        _LIVE[name].delete()
    port = deployment_config.port or _free_port()
    if not _port_free(port):
        raise WebserviceException(
            f"port {port} is in use on this machine; choose another: deploy_configuration(port=...)"
        )
    scratch = tempfile.TemporaryDirectory(prefix="bundler-service-")
    try:
        inputs = package_inputs(workspace, models, inference_config, Path(scratch.name))
        saved = api.save(Path(scratch.name, "bundle"), inputs, home=workspace.home)
        docker = engines.docker_engine()
        if docker is not None:
            service = LocalWebservice(name, port, "a container run by docker", scratch)
            image = f"{layout.image_name(name)}:latest"
            docker.build(
                saved.path, image, on_line=(lambda line: print(line, end="")) if show_output else lambda line: None
            )
            docker.run_detached(image, name, port, saved.plan.image.port)
            service._engine = docker
        else:
            service = LocalWebservice(
                name, port, "the bundle's server in this Python: no Docker engine answers here", scratch
            )
            service._process = _start_server(saved.path, port, service._log_path)
    except BaseException:
        scratch.cleanup()
        raise
    print(f"Deploying local web service {name} as {service.mode}, on port {port}", flush=True)
    _LIVE[name] = service
    return service


def _start_server(bundle: Path, port: int, log_path: Path) -> subprocess.Popen:
    from bundler import serve

    missing = serve.missing_requirements(bundle)
    if missing:
        user_requirements = bundle / layout.read_manifest(bundle).requirements_file
        raise UserErrorException(
            f"the service's requirements are not installed in this Python: {', '.join(missing)}; install them with: "
            f"pip install -r {bundle / layout.RUNTIME_REQUIREMENTS} -r {user_requirements}"
        )
    command = serve.command(bundle, port=port, host="127.0.0.1")
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            list(command.argv),
            env=command.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=syscalls.dying_with_parent(signal.SIGTERM),  # None off Linux: the exit handler below stops it
        )


@atexit.register
def _stop_all() -> None:
    for service in list(_LIVE.values()):
        try:
            service.delete()
        except Exception:  # noqa: BLE001 - at exit, stop what can be stopped and go on
            pass


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
