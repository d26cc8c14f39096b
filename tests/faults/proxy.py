"""A loopback TCP proxy that slows, fragments or cuts the stream on demand.

    with FaultyProxy("127.0.0.1", dovecot.port, delay=0.01, chunk=512) as proxy:
        ...connect to proxy.port...
        proxy.cut_after(50_000)   # the next 50 kB from the server, then every connection drops
        proxy.cut_all()           # drop every open connection now
"""

from __future__ import annotations

import select
import socket
import threading
import time
from types import TracebackType
from typing import Self

POLL_SECONDS = 0.05


class FaultyProxy:
    def __init__(self, target_host: str, target_port: int, *, delay: float = 0.0, chunk: int = 65536) -> None:
        self.target = (target_host, target_port)
        self.delay = delay  # seconds slept before forwarding each chunk
        self.chunk = chunk  # at most this many bytes forwarded at once
        self.connections = 0  # accepted so far
        self.cuts = 0  # times every connection was dropped on purpose
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._budget: int | None = None
        self._generation = 0  # bumped by cut_all(); pumps of older generations close
        self._threads: list[threading.Thread] = []

    def start(self) -> Self:
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def cut_all(self) -> None:
        with self._lock:
            self._generation += 1
            self.cuts += 1

    def cut_after(self, nbytes: int) -> None:
        """Let ``nbytes`` more bytes through from the server, then cut every connection."""
        with self._lock:
            self._budget = nbytes

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self) -> None:
        self._listener.settimeout(POLL_SECONDS)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self.connections += 1
            self._spawn(self._pump, client, server)

    def _take_budget(self, size: int) -> int:
        """How many of ``size`` server bytes may pass; -1 means cut now."""
        with self._lock:
            if self._budget is None:
                return size
            if self._budget <= 0:
                self._budget = None
                self._generation += 1
                self.cuts += 1
                return -1
            allowed = min(size, self._budget)
            self._budget -= allowed
            return allowed

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        generation = self._generation
        peers = {client: server, server: client}
        try:
            while not self._stop.is_set() and generation == self._generation:
                readable, _, _ = select.select(list(peers), [], [], POLL_SECONDS)
                for sock in readable:
                    data = sock.recv(self.chunk)
                    if not data:
                        return
                    if sock is server:
                        allowed = self._take_budget(len(data))
                        if allowed < 0:
                            return
                        data = data[:allowed]
                    if self.delay:
                        time.sleep(self.delay)
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, server):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
