"""`lightbox serve --processes N`: one listening socket, its connections dealt to the N web processes in turn.

The first process accepts every connection on its event loop and keeps one in N; the others are handed to the
other processes over a Unix socket pair each (the descriptor itself, SCM_RIGHTS), where uvicorn serves them as
if it had accepted them. Before, each process had a listening socket of its own (SO_REUSEPORT) and the kernel
spread connections by address hash: four keep-alive clients landed 3:1 or 4:0 on two processes about two times
in three, and the busier process capped the throughput.

A process that cannot take one (it died, or its queue is full) is skipped: the first serves the connection
itself, so nothing is refused while one process is left. (A connection dealt in the instant a process is killed,
before the kernel has closed its end of the channel, is lost with it.)
"""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn

log = logging.getLogger("lightbox.serve")

_ACCEPT_BURST = 64  # connections taken per wake-up of the listening socket, so a burst does not starve requests


class Server(uvicorn.Server):
    """uvicorn's server on connections dealt to it: by itself from `listener` (the first process, which deals
    the others' to `peers`), or received on `inbox` (another process)."""

    def __init__(self, config: uvicorn.Config, *, listener: socket.socket | None = None,
                 peers: list[socket.socket] | None = None, inbox: socket.socket | None = None):
        super().__init__(config)
        self.listener, self.peers, self.inbox = listener, list(peers or []), inbox
        self._turn = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._protocol = None  # set at start-up: makes the protocol of one connection

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=[])  # no listening server of uvicorn's own: connections come from here
        if self.should_exit:
            return
        self._loop = asyncio.get_running_loop()
        config, loop = self.config, self._loop

        def protocol():  # what uvicorn's own listening server makes for each connection it accepts
            return config.http_protocol_class(config=config, server_state=self.server_state,
                                              app_state=self.lifespan.state, _loop=loop)

        self._protocol = protocol
        if self.listener is not None:
            self.listener.setblocking(False)
            self._loop.add_reader(self.listener.fileno(), self._accept)
            host, port = self.listener.getsockname()[:2]
            log.info("Lightbox web processes: %d on http://%s:%d, connections dealt in turn",
                     len(self.peers) + 1, host, port)
        if self.inbox is not None:
            self.inbox.setblocking(False)
            self._loop.add_reader(self.inbox.fileno(), self._receive)

    async def shutdown(self, sockets=None) -> None:
        for sock in (self.listener, self.inbox):  # stop taking connections first, as uvicorn closes its servers
            if sock is not None and sock.fileno() >= 0:
                if self._loop is not None:
                    self._loop.remove_reader(sock.fileno())
                sock.close()
        for peer in self.peers:
            peer.close()
        await super().shutdown(sockets)

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BURST):
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of descriptors: the connection waits in the backlog for the next wake-up
                log.warning("could not accept a connection", exc_info=True)
                return
            self._deal(conn)

    def _deal(self, conn: socket.socket) -> None:
        """Keep `conn` (every N-th) or hand it to the next process that takes it."""
        while self.peers:
            self._turn = (self._turn + 1) % (len(self.peers) + 1)
            if self._turn == 0:
                break
            peer = self.peers[self._turn - 1]
            try:
                socket.send_fds(peer, [b"c"], [conn.fileno()], socket.MSG_DONTWAIT)
            except BlockingIOError:  # its queue is full (busy or stopped): the next one
                continue
            except OSError:  # it is gone: no more turns for it
                log.warning("web process %d stopped taking connections", self._turn)
                peer.close()
                del self.peers[self._turn - 1]
                self._turn -= 1
                continue
            conn.close()  # the other process holds its own descriptor of the connection now
            return
        self._take(conn)

    def _receive(self) -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.inbox, 64, 64, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            for fd in fds:
                self._take(socket.socket(fileno=fd))
            if not data:  # the first process is gone (and this one gets SIGTERM from it: see cli)
                self._loop.remove_reader(self.inbox.fileno())
                self.inbox.close()
                self.should_exit = True
                return

    def _take(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = self._loop.create_task(self._loop.connect_accepted_socket(self._protocol, conn))
        task.add_done_callback(_report)


def _report(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not serve a connection", exc_info=task.exception())


def pair() -> tuple[socket.socket, socket.socket]:
    """(the first process's end, the other process's end) of a hand-off channel."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
