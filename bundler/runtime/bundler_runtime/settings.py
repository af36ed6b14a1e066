"""Read the server's settings from the environment, once, with clear errors."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_APP_ROOT = "/var/azureml-app"


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    port: int
    workers: int
    scoring_timeout: float  # seconds
    max_request_bytes: int
    app_root: str
    entry_script: str
    host: str = "0.0.0.0"
    service_name: str = "ML service"
    service_version: str = "1.0"
    service_path_prefix: str = ""  # shown in the swagger document's paths only, as on the reference
    cors_origins: tuple = ()  # AML_CORS_ORIGINS, comma-separated; "*" allows any origin

    @property
    def entry_script_path(self) -> str:
        return os.path.join(self.app_root, self.entry_script)

    @property
    def scoring_timeout_ms(self) -> int:
        return int(round(self.scoring_timeout * 1000))


def _number(env, name: str, default, kind=int, low=1):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value < low:
        raise SettingsError(f"{name}={raw!r} must be at least {low}")
    return value


def _workers(env) -> int:
    """BUNDLER_WORKERS (or the reference's WORKER_COUNT); "auto": what the CPU limit allows."""
    if env.get("BUNDLER_WORKERS", "").strip().lower() == "auto":
        return workers_for_cpu_limit()
    return _number(env, "BUNDLER_WORKERS", _number(env, "WORKER_COUNT", 1))


def workers_for_cpu_limit(cgroup_root: str = "/sys/fs/cgroup", cpus: int | None = None) -> int:
    """One worker per CPU of the container's limit, rounded up (a 1500m limit: 2), read from the
    cgroup (v2 cpu.max, else v1 cpu.cfs_quota_us over cpu.cfs_period_us), not from the host,
    whose cores the container may not use. Without a limit: the CPUs this process may run on."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = _cpu_quota(cgroup_root)
    limit = cpus if quota is None else min(cpus, max(1, -(-quota[0] // quota[1])))
    return max(1, min(limit, 64))


def _cpu_quota(root: str):
    """(quota, period) in microseconds, or None for no limit."""
    try:
        with open(os.path.join(root, "cpu.max")) as handle:
            quota, _, period = handle.read().strip().partition(" ")
        return None if quota == "max" else (int(quota), int(period or 100000))
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as handle:
            quota = int(handle.read().strip())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as handle:
            period = int(handle.read().strip())
        return None if quota <= 0 else (quota, period)
    except (OSError, ValueError):
        return None


def from_environment(env=None) -> Settings:
    env = os.environ if env is None else env
    entry = env.get("AZUREML_ENTRY_SCRIPT", "score.py")
    app_root = env.get("AML_APP_ROOT") or (
        os.path.dirname(os.path.abspath(entry)) if os.path.isabs(entry) else DEFAULT_APP_ROOT
    )
    return Settings(
        port=_number(env, "BUNDLER_PORT", 5001, low=1),
        # WORKER_COUNT is the reference server's name for the same setting.
        workers=_workers(env),
        scoring_timeout=_number(env, "BUNDLER_SCORING_TIMEOUT", 60.0, kind=float, low=0.001),
        max_request_bytes=_number(env, "BUNDLER_MAX_REQUEST_BYTES", 100 * 1024 * 1024),
        app_root=app_root,
        entry_script=entry,
        host=env.get("BUNDLER_HOST", "0.0.0.0"),
        service_name=env.get("SERVICE_NAME", "ML service"),
        service_version=env.get("SERVICE_VERSION", "1.0"),
        service_path_prefix=env.get("SERVICE_PATH_PREFIX", ""),
        cors_origins=tuple(o.strip() for o in env.get("AML_CORS_ORIGINS", "").split(",") if o.strip()),
    )
