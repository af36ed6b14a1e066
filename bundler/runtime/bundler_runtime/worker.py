"""gunicorn's asyncio worker, with the listening socket's queue as long as configured.

gunicorn makes the listening socket with a queue of 2,048 connections (its `backlog`), but
asyncio's create_server, given that socket, calls listen(100) on it: the 101st connection of
a burst was then dropped by the kernel and its client retried a second later, then 3, 7...
(2,000 clients at once: the slowest waited 2.3-15 s, 0.6-0.7 s with the whole queue). The socket
here keeps the configured queue.
(With uvloop installed, which gunicorn then prefers, libuv calls listen() itself: 100 again.)
"""

from __future__ import annotations

import socket

from gunicorn.workers.gasgi import ASGIWorker


class KeepsItsBacklog(socket.socket):
    """A listening socket on which listen() keeps the queue length it was made with."""

    backlog = 0

    @classmethod
    def taking_over(cls, listening: socket.socket, backlog: int) -> KeepsItsBacklog:
        sock = cls(listening.family, listening.type, listening.proto, fileno=listening.detach())
        sock.backlog = backlog
        return sock

    def listen(self, _asked=None):
        super().listen(self.backlog)


class ScoringWorker(ASGIWorker):
    def run(self):
        for listener in self.sockets:
            listener.sock = KeepsItsBacklog.taking_over(listener.sock, self.cfg.backlog)
        super().run()
