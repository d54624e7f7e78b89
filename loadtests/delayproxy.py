"""A TCP proxy that adds round-trip latency, to move the session store "further away".

Threads with blocking sockets, because time.sleep is precise to tens of microseconds while
asyncio timers round to the millisecond. `delay_ms` is the added round trip, split evenly
between the two directions, and may be changed while connections are open.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class DelayProxy:
    def __init__(
        self, target_port: int, delay_ms: float = 0.0, target_host: str = "127.0.0.1"
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.delay_ms = delay_ms
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> DelayProxy:
        threading.Thread(target=self._accept, daemon=True, name="delayproxy-accept").start()
        return self

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [self._server, *sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
                upstream = socket.create_connection((self.target_host, self.target_port), timeout=2)
            except OSError:
                if self._closed.is_set():
                    return
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if self.delay_ms:
                    time.sleep(self.delay_ms / 2000)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
