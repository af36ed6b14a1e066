"""Start the reference server (engine "azureml") with the bundle's settings.

The image sets the same BUNDLER_* variables for both engines, so `docker run --env
BUNDLER_PORT=...` moves the server and its health check together whichever one runs.
This maps them onto azmlinfsrv's own flag and variables, then becomes azmlinfsrv: the one
installed beside the running Python (a venv that was never activated has it there, not on
PATH), else the one on PATH.
"""

from __future__ import annotations

import os
import shutil
import sys

from bundler_runtime import settings as settings_module


def command(env) -> tuple[list[str], dict]:
    settings = settings_module.from_environment(env)
    reference_env = dict(env, WORKER_COUNT=str(settings.workers), SCORING_TIMEOUT_MS=str(settings.scoring_timeout_ms))
    argv = [server_program(env), "--entry_script", settings.entry_script_path, "--port", str(settings.port)]
    return argv, reference_env


def server_program(env) -> str:
    beside = os.path.join(os.path.dirname(sys.executable), "azmlinfsrv")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("azmlinfsrv", path=env.get("PATH")) or "azmlinfsrv"


def main() -> int:
    try:
        argv, env = command(os.environ)
    except settings_module.SettingsError as exc:
        print(f"bad server setting: {exc}", file=sys.stderr)
        return 2
    try:
        if os.path.isabs(argv[0]):
            os.execve(argv[0], argv, env)
        else:
            os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(
            f"cannot start the reference server {argv[0]} ({exc.strerror or exc}); install it into this Python "
            f"with: {sys.executable} -m pip install -r runtime/requirements.txt",
            file=sys.stderr,
        )
        return 2
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
