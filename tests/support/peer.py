"""A TCP service on loopback that counts connections: the attacker's listener on a 'new port', or a non-SMTP
service (SSH, HTTP) that greets with `banner`. Each connection is closed after `hold` seconds (0: at once). `host`
may be another loopback address (127.0.0.2): a listener the network policy can tell apart from a fake on 127.0.0.1."""

from __future__ import annotations

import socket
import threading


class Peer:
    def __init__(self, banner: bytes = b"", hold: float = 2.0, host: str = "127.0.0.1") -> None:
        self.banner = banner
        self.hold = hold
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            if self.banner:
                conn.sendall(self.banner)
            if self.hold:
                threading.Timer(self.hold, conn.close).start()
            else:
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
