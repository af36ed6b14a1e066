"""Start the reference server (engine "azureml") with the bundle's settings.

The image sets the same BUNDLER_* variables for both engines, so `docker run --env
BUNDLER_PORT=...` moves the server and its health check together whichever one runs.
This maps them onto azmlinfsrv's own flag and variables, then becomes azmlinfsrv.
"""

from __future__ import annotations

import os
import sys

from bundler_runtime import settings as settings_module


def command(env) -> tuple[list[str], dict]:
    settings = settings_module.from_environment(env)
    reference_env = dict(env, WORKER_COUNT=str(settings.workers), SCORING_TIMEOUT_MS=str(settings.scoring_timeout_ms))
    argv = ["azmlinfsrv", "--entry_script", settings.entry_script_path, "--port", str(settings.port)]
    return argv, reference_env


def main() -> int:
    try:
        argv, env = command(os.environ)
    except settings_module.SettingsError as exc:
        print(f"bad server setting: {exc}", file=sys.stderr)
        return 2
    os.execvpe(argv[0], argv, env)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
