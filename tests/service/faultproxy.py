"""A loopback TCP proxy the fault tests control: in front of the shared PostgreSQL, it forwards, goes down
(every connection cut and new ones closed at once: a database restart, a network outage) or hangs (new
connections accepted and never answered: a port that takes TCP and says nothing), without touching the
server itself.

    with FaultProxy(5432) as proxy:
        url = proxy.url(db_url)          # the same database, through the proxy
        proxy.down(); ...; proxy.up()
        proxy.hang()
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.mode = "up"  # up, down, hang
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._pairs: list[tuple[socket.socket, socket.socket | None]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.log: list[tuple[float, str]] = []  # (time, what): the faults as they were applied
        threading.Thread(target=self._accept, name="faultproxy", daemon=True).start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def url(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's."""
        scheme, rest = url.split("://", 1)
        creds, _, hostpath = rest.rpartition("@")
        path = hostpath.split("/", 1)[1]
        return f"{scheme}://{creds + '@' if creds else ''}127.0.0.1:{self.port}/{path}"

    # ----- faults ------------------------------------------------------------------------------------
    def up(self) -> None:
        self._set("up")

    def down(self) -> None:
        """Cut every connection now; refuse (accept and close) new ones until `up`."""
        self._set("down")
        self._cut_all()

    def hang(self) -> None:
        """New connections are accepted and never answered; those already open go on."""
        self._set("hang")

    def outage(self, seconds: float) -> None:
        self.down()
        time.sleep(seconds)
        self.up()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._cut_all()

    # ----- plumbing ----------------------------------------------------------------------------------
    def _set(self, mode: str) -> None:
        self.mode = mode
        self.log.append((time.time(), mode))

    def _cut_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        s.close()  # RST: the peer sees the connection reset, as after a crash

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.mode == "down":
                client.close()
                continue
            if self.mode == "hang":
                with self._lock:
                    self._pairs.append((client, None))  # held open, never read, never answered
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                if self._closed:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._pairs = [p for p in self._pairs if p != (a, b)]
