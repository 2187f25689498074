"""Real processes on loopback for the fault suite: a private Redis, a private PostgreSQL cluster (so stopping it
disturbs nothing else), the API (uvicorn) and worker processes (arq), and an in-process aiosmtpd sink.

Every process is started by us and killed only by its stored PID; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.smtp_server import SmtpServer, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if pred():
                return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


class PrivateRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed (.ci/run installs it)"
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                                     text=True).stdout.strip() == "PONG", 10, "redis")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def cli(self, *args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True,
                              timeout=10).stdout.strip()


class PrivatePostgres:
    """A throwaway PostgreSQL cluster owned by the `postgres` user (PostgreSQL refuses to run as root)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "pg"
        self.bin = Path(sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1])
        self.as_pg: list[str] = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/outbox"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_pg, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self.dir.mkdir(parents=True)
        if self.as_pg:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.dir.parent, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres",
                  "--no-sync")
        self.start()
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "outbox")

    def start(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")


class Live:
    """API + workers as processes against the given database and Redis, with a supervisor for workers."""

    def __init__(self, workdir: Path, db_url: str, redis_url: str, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OUTBOX_")}
        self.env.update(DATABASE_URL=db_url, REDIS_URL=redis_url, OUTBOX_VAR_DIR=str(workdir / "var"),
                        OUTBOX_SECRET_KEYS="kRYq5XbX7xkq8o2sFZ1S1X3f0pWq0yT8m3vV6cZ9aQk=", **(env or {}))
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.key = ""
        self.smtp = SmtpServer()

    def outbox(self, *args: str) -> str:
        r = subprocess.run([str(BIN / "outbox"), *args], env=self.env, cwd=self.workdir, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def _log(self, name: str) -> Any:
        return open(self.workdir / f"{name}.log", "ab")

    def start_api(self) -> None:
        self.api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(self.port), "--log-level", "warning"],
            env=self.env, cwd=ROOT, stdout=self._log("api"), stderr=subprocess.STDOUT)
        _wait(lambda: httpx.get(self.base + "/healthz", timeout=1).status_code == 200, 30, "the API")

    def start_worker(self) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-m", "arq", "worker.main.WorkerSettings"], env=self.env, cwd=ROOT,
                             stdout=self._log(f"worker{len(self.workers)}"), stderr=subprocess.STDOUT)
        self.workers.append(p)
        return p

    def restart_dead_workers(self) -> int:
        """What a supervisor does: arq's loop ends when Redis goes away."""
        n = 0
        for i, p in enumerate(self.workers):
            if p.poll() is not None:
                self.workers[i] = subprocess.Popen(
                    [sys.executable, "-m", "arq", "worker.main.WorkerSettings"], env=self.env, cwd=ROOT,
                    stdout=self._log(f"worker{i}"), stderr=subprocess.STDOUT)
                n += 1
        return n

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)

    def setup(self, *, workers: int, smtp_extra: dict[str, Any] | None = None) -> None:
        self.smtp.__enter__()
        self.outbox("db", "upgrade")
        self.key = self.outbox("api-key", "create", "--role", "admin").strip().splitlines()[-1]
        self.start_api()
        with self.client() as c:
            r = c.patch("/providers/smtp", json={"host": "127.0.0.1", "port": self.smtp.port, "tls": "none",
                                               "from_address": "outbox@example.com", "per_minute_limit": 0,
                                               "timeout_seconds": 5, **(smtp_extra or {})})
            assert r.status_code == 200, r.text
        for _ in range(workers):
            self.start_worker()

    @staticmethod
    def graph_env(ca_path: str) -> dict[str, str]:
        """Env for the API and workers to talk to a local Graph fake: its CA, and host overrides allowed."""
        return {"OUTBOX_ALLOW_PROVIDER_URL_OVERRIDE": "true", "OUTBOX_MICROSOFT_CA_BUNDLE": ca_path}

    def use_graph(self, fake: Any, batch_account: str, **extra: Any) -> None:
        """Configure Microsoft Graph against `fake` (a GraphFake) and make it the batch provider. The processes
        must have been started with `graph_env(fake.ca_path)` in their env."""
        body = {"tenant_id": fake.tenant_id, "client_id": fake.client_id, "client_secret": fake.client_secret,
                "batch_account": batch_account, "authority_host": fake.authority_host,
                "graph_base": fake.graph_base, "per_minute_limit": 0, "timeout_seconds": 5, **extra}
        with self.client() as c:
            r = c.patch("/providers/graph", json=body)
            assert r.status_code == 200, r.text
            r = c.patch("/parameters", json={"batch_provider": "graph"})
            assert r.status_code == 200, r.text

    def submit(self, n: int, subject: str = "fault") -> list[int]:
        ids: list[int] = []
        with self.client() as c:
            for start in range(0, n, 500):
                batch = [{"to": [f"r{i}@example.com"], "subject": f"{subject} {i}", "body_text": "x"}
                         for i in range(start, min(n, start + 500))]
                r = c.post("/messages/bulk", json={"messages": batch})
                assert r.status_code == 202, r.text
                ids += [a["id"] for a in r.json()["accepted"]]
        return ids

    def statuses(self) -> dict[str, int]:
        with self.client() as c:
            return dict(c.get("/status").json()["queue"]["by_status"])

    def wait_final(self, total: int, timeout: float, *, supervise: bool = True) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            if supervise:
                self.restart_dead_workers()
            with contextlib.suppress(httpx.HTTPError, KeyError):
                counts = self.statuses()
                if sum(counts.get(s, 0) for s in ("sent", "failed", "expired", "cancelled", "held")) >= total:
                    return counts
            time.sleep(0.3)
        return counts

    def stop(self) -> None:
        procs = [*self.workers, *([self.api] if self.api else [])]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        self.smtp.__exit__(None, None, None)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="outbox-fault-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
