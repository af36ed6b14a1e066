"""Progress of long byte work (a copy, a hash, an archive, a download), for people at a terminal.

The core reports bytes through `bytes_of(label, total)`; what it shows is up to whoever
installed a reporter: the CLI installs one that draws click's progress bar on stderr when
stderr is a terminal and --quiet was not given. Without a reporter (the Python API, a pipe,
a test) nothing is drawn and nothing is slowed. Work under THRESHOLD bytes shows nothing.
"""

from __future__ import annotations

import contextlib
import sys
import time

THRESHOLD = 100 * 1000 * 1000  # 100 MB: below it, work is over before a bar would help

_reporter = None


def install(reporter) -> None:
    """reporter(label, total) -> a context manager yielding update(n); None: no progress shown."""
    global _reporter
    _reporter = reporter


def shown() -> bool:
    """Whether progress is drawn: tools with bars of their own (pip's downloads) draw theirs then."""
    return _reporter is not None


@contextlib.contextmanager
def bytes_of(label: str, total: int):
    """Yields update(n) to call as n more bytes are done, or None when nothing is shown."""
    if _reporter is None or total < THRESHOLD:
        yield None
        return
    with _reporter(label, total) as update:
        yield update


@contextlib.contextmanager
def terminal_bar(label: str, total: int):
    """click's progress bar on stderr: bytes done, the rate, and the time left."""
    import click

    started = time.monotonic()

    def shown(done):
        if done is None:
            return ""
        rate = done / max(time.monotonic() - started, 1e-6)
        return f"{_size(done)} of {_size(total)}, {_size(rate)}/s"

    with click.progressbar(
        length=total, label=label, file=sys.stderr, show_eta=True, show_percent=True, item_show_func=shown
    ) as bar:
        done = shown_done = 0
        last = 0.0

        def update(n: int) -> None:
            # Redrawn at most ten times a second: a tar stream reads in 512-byte steps.
            nonlocal done, shown_done, last
            done += n
            now = time.monotonic()
            if now - last >= 0.1 or done >= total:
                bar.update(done - shown_done, done)
                shown_done, last = done, now

        yield update
        # The work is done (a tar's end needs no reading): the bar says so.
        bar.update(max(total - shown_done, 0), max(done, total))


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"
