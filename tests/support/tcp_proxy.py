"""A TCP forwarder in front of the real Label Studio, so a test can take Label Studio "down"
(connections refused) and bring it back on the same address, or freeze a client at its n-th
request of some kind, without touching the shared server."""

from __future__ import annotations

import socket
import threading

from tests.support.services import free_port


class TcpProxy:
    def __init__(self, target_port: int, port: int | None = None):
        self.target_port = target_port
        self.port = port or free_port()
        self.held = threading.Event()  # set when a request matching hold() was stopped
        self._hold: tuple[bytes, int] | None = None
        self._seen = 0
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Refuse new connections and cut the open ones, like a server that went away."""
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not)
            except OSError:
                pass
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def hold(self, pattern: bytes, after: int) -> None:
        """Forward the first `after` client sends containing `pattern`; swallow the next one (the
        client waits for an answer that never comes) and set `held`."""
        self._hold, self._seen = (pattern, after), 0
        self.held.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_client and self._swallow(data):
                    return  # both ends stay open: the client waits for an answer that never comes
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _swallow(self, data: bytes) -> bool:
        if self._hold is None or self._hold[0] not in data:
            return False
        with self._lock:
            self._seen += 1
            if self._seen <= self._hold[1]:
                return False
        self.held.set()
        return True
