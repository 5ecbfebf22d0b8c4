"""A TCP proxy on loopback that can reset connections: Redis as a restarting server or a load
balancer in front of it shows itself to a client (`./dev chaos`)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time


class ResettingProxy:
    """A TCP proxy to Redis on loopback; while `resetting` is set it resets every connection it
    holds and every new one (SO_LINGER 0: an RST, as a restarting Redis or a proxy does)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.resetting = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._reset_loop, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.resetting.is_set():
                _reset(client)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def _reset_loop(self) -> None:
        while not self.closed.is_set():
            if self.resetting.is_set():
                held, self.open = self.open, []
                for sock in held:
                    _reset(sock)
            time.sleep(0.05)

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
