"""Serve the app with gunicorn: settings from the environment, init() once per worker.

gunicorn's asyncio (ASGI) worker: keep-alive connections wait in the event loop, and run()
is called on the loop's thread, so it never runs concurrently within a process (entry
scripts are not thread-safe) and the scoring timeout can use SIGALRM. It measured about
twice the throughput of the gthread and sync workers here (benchmarks/).

Each worker loads the entry script and calls init() before it accepts a request; if that
fails, the whole server stops with a clear log line, rather than restarting a broken
worker forever. A worker that dies after it booted (os._exit() in run(), a crash in native
code) is replaced, whatever its exit code: which of the two it was is decided by whether
the worker had reported itself booted (BootReports), not by an exit code user code can
also produce.

Garbage collection follows the recipe in the documentation of Python's gc.freeze(): the
collector is off while the master boots (__main__) and while a worker imports the entry
script, and what those made is frozen, never to be collected or copied into a worker; init()
and requests run with the collector on. Booting without it is about 10 ms of a cold start.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import tempfile
import traceback

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import HaltServer

from bundler_runtime import settings as settings_module

logger = logging.getLogger("bundler_runtime")
WORKER_BOOT_ERROR = 3  # this server's exit status when a worker could not boot, as gunicorn's


def _writable_tmp() -> str:
    # /dev/shm is memory-backed and writable even under a read-only root file system.
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


def _freeze_boot_objects():
    """Exempt everything made so far from collection (it lives as long as the process), then
    collect as usual. In the master this is just before a fork: the worker shares those
    pages instead of copying them when its collector would have touched them."""
    gc.freeze()
    gc.enable()


def _before_fork(server, worker):
    _freeze_boot_objects()


def _after_fork(server, worker):
    gc.disable()  # until build_app has imported the entry script


class BootReports:
    """A pipe on which each worker writes its pid once it has booted (init() done), read by
    the master when a worker exits."""

    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.booted: set[int] = set()
        self._pending = b""

    def report(self) -> None:
        os.write(self.write_fd, b"%d\n" % os.getpid())  # under PIPE_BUF: one atomic write

    def had_booted(self, pid: int) -> bool:
        try:
            while chunk := os.read(self.read_fd, 4096):
                self._pending += chunk
        except BlockingIOError:
            pass
        *lines, self._pending = self._pending.split(b"\n")
        self.booted.update(int(line) for line in lines if line)
        return pid in self.booted


class ScoringArbiter(Arbiter):
    """gunicorn's master, except for how a worker's exit is judged. gunicorn halts the server
    when a worker exits with 3 or 4, but run() can exit with any status (os._exit(3)); so
    those codes are set out of reach (an exit status is 0-255) and _after_worker_exit
    decides instead."""

    WORKER_BOOT_ERROR = 256 + 3
    APP_LOAD_ERROR = 256 + 4
    stopping = False

    def stop(self, graceful=True):
        self.stopping = True  # workers killed on the way out are not boot failures
        super().stop(graceful)


def _after_worker_exit(arbiter, worker):
    """A worker that exits before it booted stops the server (restarting it would fail the
    same way, forever); one that had booted is replaced by gunicorn, as usual."""
    if not arbiter.stopping and not arbiter.app.boot_reports.had_booted(worker.pid):
        raise HaltServer("Worker failed to boot.", WORKER_BOOT_ERROR)


class ScoringServer(BaseApplication):
    def __init__(self, settings):
        self.settings = settings
        self.boot_reports = BootReports()
        super().__init__()

    def run(self):
        ScoringArbiter(self).run()

    def load_config(self):
        s = self.settings
        options = {
            "bind": [f"{s.host}:{s.port}"],
            "workers": s.workers,
            "worker_class": "bundler_runtime.worker.ScoringWorker",  # gunicorn's asyncio worker
            "asgi_lifespan": "off",  # the app is ready before the worker accepts (see load)
            "keepalive": 75,  # longer than typical load balancers' idle timeouts
            # One listening socket, the master's, for every worker: an idle worker takes the next
            # connection, and the socket holds connections while crashed workers are replaced.
            # (SO_REUSEPORT sockets per worker spread a burst of keep-alive connections evenly,
            # but pin each new connection to one worker, busy or not, refuse connections while
            # all workers restart, and let a second server share the port unnoticed.)
            # A run() that ignores the scoring timeout (stuck in C code) gets the worker
            # restarted once the heartbeat stops, well after the timeout.
            "timeout": int(s.scoring_timeout) + 30,
            # SIGTERM: finish in-flight requests (a run() may take the whole scoring timeout), then exit;
            # the deploy files' grace period (scoring timeout + 15 s) outlasts this.
            "graceful_timeout": int(s.scoring_timeout) + 5,
            "accesslog": None,  # asgi.py writes the access log, at a fraction of the cost
            "errorlog": "-",
            "worker_tmp_dir": _writable_tmp(),
            "control_socket_disable": True,  # gunicorn >= 24 would write ~/.gunicorn otherwise
            "proc_name": "bundler-scoring",
            "pre_fork": _before_fork,
            "post_fork": _after_fork,
            "child_exit": _after_worker_exit,
        }
        known = self.cfg.settings
        for key, value in options.items():
            if key in known:
                self.cfg.set(key, value)

    def load(self):
        from bundler_runtime.asgi import ASGIAdapter

        app = ASGIAdapter(build_app(self.settings), self.settings.max_request_bytes)
        self.boot_reports.report()
        return app


def build_app(settings):
    """Import the entry script, run init(), build the app; exit the worker on failure."""
    from bundler_runtime.app import ScoringApp
    from bundler_runtime.entry import load
    from bundler_runtime.swagger import SwaggerDocs

    path = settings.entry_script_path
    try:
        script = load(path, settings.app_root)
    except BaseException:  # noqa: BLE001 - any failure to import is fatal, and said once
        logger.error("Failed to load the entry script %s:\n%s", path, traceback.format_exc())
        sys.exit(WORKER_BOOT_ERROR)
    _freeze_boot_objects()
    logger.info("Invoking init() of %s", path)
    try:
        script.init()
    except BaseException:  # noqa: BLE001
        logger.error("init() of the entry script %s failed; the server stops:\n%s", path, traceback.format_exc())
        sys.exit(WORKER_BOOT_ERROR)
    app = ScoringApp(script, settings, SwaggerDocs(script, settings))
    logger.info(
        "Worker %s ready on port %s (scoring timeout %s ms)", os.getpid(), settings.port, settings.scoring_timeout_ms
    )
    return app


def main() -> int:
    sys.dont_write_bytecode = True
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
    try:
        settings = settings_module.from_environment()
    except settings_module.SettingsError as exc:
        logger.error("bad server setting: %s", exc)
        return 2
    if not os.path.isfile(settings.entry_script_path):
        logger.error(
            "entry script %s not found (AML_APP_ROOT=%s, AZUREML_ENTRY_SCRIPT=%s)",
            settings.entry_script_path,
            settings.app_root,
            settings.entry_script,
        )
        return 2
    ScoringServer(settings).run()  # exits the process itself on a worker boot error
    return 0
