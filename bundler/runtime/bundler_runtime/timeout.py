"""The scoring timeout: interrupt a run() that takes too long; the worker keeps serving.

Like the reference server, a SIGALRM timer raises ScoringTimeout inside run() at the next
Python bytecode. Requests run in the worker's main thread (the ASGI worker's event loop),
where signal handlers run. A run() stuck in C code past the timeout is caught by
gunicorn's worker timeout instead, which restarts the worker.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class ScoringTimeout(TimeoutError):
    """A TimeoutError, as on the reference server: a run() may catch it to return a fallback."""


def _raise_timeout(signum, frame):
    raise ScoringTimeout()


@contextlib.contextmanager
def time_limit(seconds: float):
    if threading.current_thread() is not threading.main_thread():
        yield  # signals only reach the main thread; there is nothing to arm here
        return
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
