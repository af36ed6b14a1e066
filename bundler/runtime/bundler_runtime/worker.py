"""gunicorn's asyncio worker, taking one new connection each time it looks.

Every worker waits on the one listening socket. asyncio accepts up to 100 connections each
time that socket is ready, so when a burst arrives (a load balancer opening its pool of
keep-alive connections, wrk's 16), the first worker awake takes all of it and keeps it: the
other workers idle while it runs every request (one start in four, with two workers, halved
the throughput). Answering "nothing more now" after each connection sends the worker back to
its loop, where the next one is another worker's to take as much as its own.
"""

from __future__ import annotations

import socket

from gunicorn.workers.gasgi import ASGIWorker


class OneConnectionPerWakeUp(socket.socket):
    """A listening socket whose accept() hands out one connection, then says it would block."""

    _took_one = False

    @classmethod
    def taking_over(cls, listening: socket.socket) -> OneConnectionPerWakeUp:
        return cls(listening.family, listening.type, listening.proto, fileno=listening.detach())

    def accept(self):
        if self._took_one:
            self._took_one = False
            raise BlockingIOError  # asyncio ends this round of accepting; the socket stays ready
        connection = super().accept()
        self._took_one = True
        return connection


class ScoringWorker(ASGIWorker):
    def run(self):
        for listener in self.sockets:
            listener.sock = OneConnectionPerWakeUp.taking_over(listener.sock)
        super().run()
