"""A loopback IMAP proxy whose server never announces new mail during IDLE, as Courier and Cyrus often do.

Everything is forwarded, except that while the client is idling (after its
``IDLE`` command, before ``DONE``) the server's untagged EXISTS, RECENT and
FETCH lines are dropped: the client learns of new mail only by asking.
"""

from __future__ import annotations

import re
import select
import socket
import threading
from typing import Self

POLL_SECONDS = 0.05
_ANNOUNCEMENT = re.compile(rb"^\* \d+ (?:EXISTS|RECENT|FETCH)\b", re.IGNORECASE)
_IDLE_COMMAND = re.compile(rb"^\S+ IDLE\r?$", re.IGNORECASE)


class LazyIdleProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.dropped = 0  # announcements swallowed so far
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Self:
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept_loop(self) -> None:
        self._listener.settimeout(POLL_SECONDS)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            server = socket.create_connection(self.target)
            thread = threading.Thread(target=self._pump, args=(client, server), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        idling = False
        pending = {client: b"", server: b""}
        peers = {client: server, server: client}
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select(list(peers), [], [], POLL_SECONDS)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pending[sock] += data
                    *lines, pending[sock] = pending[sock].split(b"\n")
                    out = []
                    for line in lines:
                        if sock is client:
                            if _IDLE_COMMAND.match(line):
                                idling = True
                            elif line.strip().upper() == b"DONE":
                                idling = False
                        elif idling and _ANNOUNCEMENT.match(line):
                            self.dropped += 1
                            continue
                        out.append(line + b"\n")
                    peers[sock].sendall(b"".join(out))
        except OSError:
            return
        finally:
            for sock in (client, server):
                sock.close()
