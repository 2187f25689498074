"""The API as a real process: uvicorn on a free loopback port, its own SQLite file, a key made with the CLI.

For tests whose defect lives in the server (HTTP framing, body limits, memory), where an in-process ASGI
client would not show it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.support.smtp_server import free_port

ROOT = Path(__file__).resolve().parents[2]


class LiveApi:
    def __init__(self, work: Path, redis_url: str | None = None, **env_extra: str) -> None:
        self.work = work
        self.redis_url = redis_url or os.environ.get("TEST_REDIS", "redis://127.0.0.1:6379/15")
        self.env_extra = env_extra
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.key = ""
        self.env: dict[str, str] = {}

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str) -> str:
        outbox = str(Path(sys.executable).parent / "outbox")
        return subprocess.run([outbox, *args], env=self.env, check=True, capture_output=True, text=True,
                              cwd=ROOT, timeout=60).stdout

    def __enter__(self) -> LiveApi:
        self.work.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
        env.update(DATABASE_URL=f"sqlite:///{self.work / 'outbox.db'}", REDIS_URL=self.redis_url,
                   OUTBOX_VAR_DIR=str(self.work / "var"), OUTBOX_TUNE_GC="false", **self.env_extra)
        self.env = env
        self.cli("db", "upgrade")
        self.key = self.cli("api-key", "create", "--role", "admin").strip().splitlines()[-1]
        self.port = free_port()
        self.log = open(self.work / "api.log", "wb")  # closed in __exit__
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(self.port), "--log-level", "warning"],
            env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
            if self.proc.poll() is not None:
                break
        self.__exit__(None, None, None)
        raise RuntimeError("the API did not start: " + (self.work / "api.log").read_text()[-2000:])

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()

    def rss_mb(self, field: str = "VmRSS") -> float:
        """VmRSS (now) or VmHWM (the peak so far) of the API process, in MB."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(field)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)


def read_response(sock: socket.socket, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Reads one HTTP/1.1 response (status, headers, body by Content-Length) from a raw socket."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response: " + repr(data[:200]))
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]
