"""The deploy files' facts: Kubernetes and Compose settings that the image satisfies. PURE.

Made from [deploy] and the image: its name and where it is pushed, its port, its user, the
server's settings; the templates deploy/kubernetes.yaml.jinja and compose.yaml.jinja only
lay them out. Every timing derives from the config: init() may take long (the startup
probe allows `startup_seconds`), and SIGTERM drains in-flight requests, so the grace period
outlasts the scoring timeout.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from bundler.errors import ConfigError

KUBERNETES = "deploy/kubernetes.yaml"
COMPOSE = "deploy/compose.yaml"
COMPOSE_PORT = 6789  # as the seed's `docker run -p 6789:5001`
PROBE_PERIOD = 5  # seconds between startup and readiness probes
LIVENESS_PERIOD = 20
IMAGE_MARK = "# bundler deploy-manifest --image REF replaces this"
DRAIN_MARGIN = 15  # seconds the grace period adds to the scoring timeout: the last request, then exit

# Kubernetes quantities: "500m", "2", "0.5" CPU; "512Mi", "1Gi", "1G" memory.
CPU = re.compile(r"(?:[0-9]+m|[0-9]+(?:\.[0-9]{1,3})?)")
MEMORY = re.compile(r"[0-9]+(?:Ki|Mi|Gi|Ti|k|M|G|T)?")


@dataclass(frozen=True)
class DeploySettings:
    """[deploy] in bundler.toml, checked."""

    enabled: bool = True
    replicas: int = 1
    min_replicas: int = 1
    max_replicas: int = 3
    target_cpu_utilization: int = 70
    cpu_request: str = "500m"
    cpu_limit: str = "1"
    memory_request: str = "512Mi"
    memory_limit: str = "1Gi"
    workers: str = "auto"  # "auto": as many as the CPU limit allows, read from the cgroup by the runtime
    startup_seconds: int = 300  # how long init() may take before Kubernetes gives up on a pod


SETTINGS_TYPES = {
    "enabled": bool,
    "replicas": int,
    "min_replicas": int,
    "max_replicas": int,
    "target_cpu_utilization": int,
    "cpu_request": str,
    "cpu_limit": str,
    "memory_request": str,
    "memory_limit": str,
    "workers": (str, int),
    "startup_seconds": int,
}


def settings(values: dict, where) -> DeploySettings:
    """[deploy]'s values (already of the schema's types) checked; `where(key)` names the line."""
    given = {key: value for key, value in values.items() if key in SETTINGS_TYPES}
    if "workers" in given:
        given["workers"] = str(given["workers"])
    chosen = DeploySettings(**given)
    checks = [
        ("replicas", 1 <= chosen.replicas <= 1000, "between 1 and 1000"),
        ("min_replicas", 1 <= chosen.min_replicas <= chosen.max_replicas, "from 1 to max_replicas"),
        ("max_replicas", chosen.max_replicas <= 1000, "at most 1000"),
        ("target_cpu_utilization", 1 <= chosen.target_cpu_utilization <= 100, "a percentage, 1 to 100"),
        ("cpu_request", CPU.fullmatch(chosen.cpu_request), 'a CPU quantity, e.g. "500m" or "2"'),
        ("cpu_limit", CPU.fullmatch(chosen.cpu_limit), 'a CPU quantity, e.g. "1" or "1500m"'),
        ("memory_request", MEMORY.fullmatch(chosen.memory_request), 'a memory quantity, e.g. "512Mi"'),
        ("memory_limit", MEMORY.fullmatch(chosen.memory_limit), 'a memory quantity, e.g. "1Gi"'),
        ("workers", chosen.workers == "auto" or (chosen.workers.isdigit() and 1 <= int(chosen.workers) <= 64),
         '"auto" or a number from 1 to 64'),
        ("startup_seconds", 5 <= chosen.startup_seconds <= 86400, "between 5 and 86400"),
    ]  # fmt: skip
    for key, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{where(key)}: {key} must be {expected}")
    return chosen


@dataclass(frozen=True)
class DeploySpec:
    """What the deploy templates see (as `image.deploy`)."""

    name: str  # the Deployment's, Service's and Compose service's name
    image: str  # the reference the cluster pulls; `bundler deploy-manifest --image` replaces it
    version: str  # app.kubernetes.io/version
    port: int  # the container's
    uid: int
    env: tuple[tuple[str, str], ...]  # BUNDLER_* settings, as the container gets them
    settings: DeploySettings
    termination_grace_seconds: int
    startup_failure_threshold: int
    healthcheck: tuple[str, ...]
    scoring_timeout: int
    liveness_failure_threshold: int = 3
    compose_port: int = COMPOSE_PORT
    probe_period: int = PROBE_PERIOD
    liveness_period: int = LIVENESS_PERIOD
    image_mark: str = IMAGE_MARK

    @property
    def selector(self) -> tuple[tuple[str, str], ...]:
        return (("app.kubernetes.io/name", self.name), ("app.kubernetes.io/instance", self.name))

    @property
    def labels(self) -> tuple[tuple[str, str], ...]:
        return self.selector + (
            ("app.kubernetes.io/version", self.version),
            ("app.kubernetes.io/component", "scoring"),
            ("app.kubernetes.io/managed-by", "bundler"),
        )


def yaml_scalar(value: object) -> str:
    """A YAML string as JSON writes it: double-quoted, every special character escaped (the
    deploy templates' `yaml` filter, and the image deploy-manifest writes)."""
    import json

    return json.dumps(str(value))


def with_image(manifest: str, image: str) -> str:
    """The Kubernetes manifest with IMAGE on each line the template marked (hand edits elsewhere kept)."""
    lines = manifest.splitlines(keepends=True)
    marked = [i for i, line in enumerate(lines) if line.rstrip().endswith(IMAGE_MARK)]
    if not marked:
        raise ConfigError(f"no line ends in '{IMAGE_MARK}'; set the image in the manifest by hand")
    for i in marked:
        indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        lines[i] = f"{indent}image: {yaml_scalar(image)}  {IMAGE_MARK}\n"
    return "".join(lines)


def kubernetes_name(name: str) -> str:
    """NAME as Kubernetes names a Service (a DNS-1035 label: a-z, 0-9 and dashes, a letter
    first, at most 63 characters) and Compose a project: "my.model_2" is "my-model-2"; a name
    too long keeps its start and a digest of the whole."""
    import hashlib

    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not text or not text[0].isalpha():
        text = f"m-{text}".rstrip("-")
    if len(text) > 63:
        text = f"{text[:54].rstrip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return text


def spec(
    settings_: DeploySettings,
    name: str,
    image: str,
    version: str,
    port: int,
    uid: int,
    env: tuple[tuple[str, str], ...],
    scoring_timeout: int,
    healthcheck: tuple[str, ...],
) -> DeploySpec:
    server_env = tuple(
        (key, settings_.workers if key == "BUNDLER_WORKERS" else value)
        for key, value in env
        if key.startswith("BUNDLER_")
    )
    return DeploySpec(
        name=kubernetes_name(name),
        image=image,
        version=version,
        port=port,
        uid=uid,
        env=server_env,
        settings=settings_,
        termination_grace_seconds=scoring_timeout + DRAIN_MARGIN,
        startup_failure_threshold=math.ceil(settings_.startup_seconds / PROBE_PERIOD),
        # A single worker in a run() answers no probe until it returns: outlast the scoring timeout.
        liveness_failure_threshold=max(3, math.ceil(scoring_timeout / LIVENESS_PERIOD) + 1),
        healthcheck=healthcheck,
        scoring_timeout=scoring_timeout,
    )
