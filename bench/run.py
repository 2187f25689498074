"""Outbox benchmark: ingest, bulk submit, delivery (1 and 2 worker processes), the sink ceiling, worker memory.

Run from the project root:   .venv/bin/python bench/run.py [--quick] [--runs 3] [--profile]

Everything runs on loopback, each part as its own process: PostgreSQL (a fresh database per run, created here
and dropped at the end), Redis (db 9, flushed between phases), the API (uvicorn app.main:app --workers 1
--loop uvloop --http httptools --no-access-log), N arq workers (arq worker.main.WorkerSettings), the SMTP sink
(bench/sink.py: aiosmtpd, counts and discards) and the load generator (bench/loadgen.py: raw asyncio HTTP/1.1,
pre-built request bytes, keep-alive) or the ceiling client (bench/ceiling.py: aiosmtplib, pre-serialised).

Ingest is measured with no worker process running (delivery does not compete); the jobs it enqueues are
flushed. Delivery pre-loads a backlog with POST /messages/bulk while batch processing is off (parameter
`batch_processing_enabled`, set in the database so no job is enqueued), starts the workers, waits for their
heartbeats, then switches batch processing on and enqueues OUTBOX_DRAIN_SLOTS drain jobs (as a bulk submit
does): t0. Done = the sink counted N and the API says N sent. msgs/s = N / (last sent_at in the database - t0).

Results: bench/results/latest.json, and a markdown table on stdout. Worker knobs are taken from the
environment (OUTBOX_CLAIM_BATCH, OUTBOX_DRAIN_SLOTS, OUTBOX_SMTP_CONNECTIONS) and recorded in the results.
Processes are stopped by their stored PID, and the database dropped, even on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any


def _app_defaults() -> Any:
    """The worker's own defaults, so the ceiling uses the connection count the workers really use."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from app.settings import Settings

    return Settings(_env_file=None)


APP_DEFAULTS = _app_defaults()
ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PY = sys.executable
BIN = Path(PY).parent
PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/9")
CLK = os.sysconf("SC_CLK_TCK")

TARGETS = {
    "ingest_rps": 1000, "ingest_p99_ms": 100, "bulk_msgs_per_s": 10_000, "delivery_1w": 1500,
    "delivery_vs_ceiling": 0.5, "worker_peak_rss_mb": 300,
}


def log(*a: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- processes (stopped by stored PID only)

class Procs:
    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None,
              cwd: Path = ROOT) -> subprocess.Popen:
        out = open(self.logdir / f"{name}.log", "ab")
        p = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        self.procs[name] = p
        return p

    def stop(self, name: str, timeout: float = 15) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.wait(5)

    def stop_all(self) -> None:
        for name in list(self.procs)[::-1]:
            with contextlib.suppress(Exception):
                self.stop(name)


def run_json(args: list[str], timeout: float) -> dict:
    """A child that prints one JSON line (load generator, ceiling client): its own process, bounded in time."""
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{args[1]} failed ({r.returncode}): {r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- /proc readings

def cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return 0


def pids_by_comm(names: tuple[str, ...]) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{d}/comm") as f:
                    if f.read().strip() in names:
                        out.append(int(d))
    return out


def comm_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:60].strip() or "?"
    except OSError:
        return "?"


def box_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v[:8]) - idle, sum(v[:8])


def vm_kb(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    return 0


class CpuWindow:
    """utime+stime of named processes (and groups found by command name) between start() and stop()."""

    def __init__(self, named: dict[str, int]) -> None:
        self.named = named

    def snap(self) -> dict[str, Any]:
        groups = {"postgres": pids_by_comm(("postgres",)), "redis": pids_by_comm(("redis-server",))}
        s = {k: cpu_ticks(p) for k, p in self.named.items()}
        for g, pids in groups.items():
            s[g] = {p: cpu_ticks(p) for p in pids}
        s["_all"] = {int(d): cpu_ticks(int(d)) for d in os.listdir("/proc") if d.isdigit()}
        s["_box"] = box_ticks()
        s["_t"] = time.monotonic()
        return s

    def start(self) -> None:
        self.a = self.snap()

    def stop(self) -> dict[str, float]:
        b = self.snap()
        a = self.a
        dt = b["_t"] - a["_t"]
        out: dict[str, float] = {}
        for k in self.named:
            out[k] = (b[k] - a[k]) / CLK / dt
        for g in ("postgres", "redis"):
            out[g] = sum(t - a[g].get(p, 0) for p, t in b[g].items()) / CLK / dt
        ncpu = os.cpu_count() or 1
        busy = (b["_box"][0] - a["_box"][0]) / max(1, b["_box"][1] - a["_box"][1])
        out["box"] = busy * ncpu
        out["bench_runner"] = (b["_all"].get(os.getpid(), 0) - a["_all"].get(os.getpid(), 0)) / CLK / dt
        # Everything else on the box (other users' processes, kernel threads): interference to report.
        known = set(self.named.values()) | set(b["postgres"]) | set(b["redis"]) | {os.getpid()}
        others = {p: (t - a["_all"].get(p, 0)) / CLK / dt for p, t in b["_all"].items() if p not in known}
        out["others"] = sum(others.values())
        rounded = {k: round(v, 3) for k, v in out.items()}
        top = sorted(((v, p) for p, v in others.items() if v > 0.02), reverse=True)[:4]
        self.top_others = [f"{comm_of(p)}[{p}]={v:.2f}" for v, p in top]
        return rounded


# ---------------------------------------------------------------- one live Outbox

class Live:
    def __init__(self, procs: Procs, logdir: Path, args: argparse.Namespace, src: Path = ROOT) -> None:
        self.src = src  # the code under test: the working tree, or an export of --ref
        self.procs = procs
        self.logdir = logdir
        self.args = args
        self.db = "outbox_bench_" + uuid.uuid4().hex[:8]
        self.port = free_port()
        self.smtp_port = free_port()
        self.ctl_port = free_port()
        self.key = ""
        from cryptography.fernet import Fernet

        self.vardir = Path(tempfile.mkdtemp(prefix="outbox-bench-var-"))
        self.env = dict(os.environ, DATABASE_URL=f"{PG}/{self.db}", REDIS_URL=REDIS_URL,
                        OUTBOX_SECRET_KEYS=Fernet.generate_key().decode(), OUTBOX_VAR_DIR=str(self.vardir),
                        OUTBOX_QUEUE=f"outbox:bench:{self.db}", PYTHONUNBUFFERED="1")
        self.env.setdefault("OUTBOX_PROVIDER_ALLOWED_NETWORKS", "127.0.0.0/8")  # the sink is on loopback
        if src != ROOT:
            self.env["PYTHONPATH"] = str(src)
        self.queue = self.env["OUTBOX_QUEUE"]
        self.workers: list[str] = []

    # -- database / redis / http helpers
    def psql(self, sql: str, db: str | None = None) -> str:
        r = subprocess.run(["psql", f"{PG}/{db or self.db}", "-XAtqc", sql], capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {sql[:80]}: {r.stderr}")
        return r.stdout.strip()

    def pgstat(self) -> dict[str, int]:
        """Counters of this database (pg_stat_database; backends flush them within about a second)."""
        cols = ["sessions", "xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_returned",
                "tup_fetched"]
        row = self.psql(f"SELECT {', '.join(cols)} FROM pg_stat_database WHERE datname = '{self.db}'")
        return dict(zip(cols, (int(x) for x in row.split("|")), strict=False))

    def pgstat_delta(self, before: dict[str, int], per: int) -> dict[str, float]:
        time.sleep(1.5)  # let the backends flush their counters
        after = self.pgstat()
        # minus this very psql session (one session, one transaction)
        d = {k: after[k] - before[k] for k in after}
        d["sessions"] -= 1
        d["xact_commit"] -= 1
        return {f"{k}_per_unit": round(v / max(1, per), 3) for k, v in d.items()}

    def redis(self, *cmd: str) -> str:
        return subprocess.run(["redis-cli", "-u", REDIS_URL, *cmd], capture_output=True, text=True,
                              timeout=30).stdout.strip()

    def http(self, method: str, path: str, body: Any = None, timeout: float = 30) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method, headers={
            "Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            return e.code, e.read()[:500]

    def count(self, status: str) -> int:
        code, body = self.http("GET", f"/messages?status={status}&limit=1")
        if code != 200:
            raise RuntimeError(f"GET /messages -> {code} {body}")
        return int(body["total"])

    def sink(self, cmd: str = "COUNT") -> list[int]:
        with socket.create_connection(("127.0.0.1", self.ctl_port), timeout=5) as s:
            s.sendall(cmd.encode() + b"\n")
            line = s.makefile().readline().split()
        return [int(x) for x in line] if cmd == "COUNT" else []

    def wait_for(self, what: str, fn: Any, timeout: float, every: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if fn():
                    return
            time.sleep(every)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    # -- lifecycle
    def up(self) -> None:
        subprocess.run(["psql", f"{PG}/postgres", "-XAtqc", f"CREATE DATABASE {self.db}"], check=True,
                       capture_output=True, timeout=60)
        self.redis("FLUSHDB")
        exe = str(BIN / "outbox")
        subprocess.run([exe, "db", "upgrade"], env=self.env, cwd=self.src, check=True, capture_output=True, timeout=120)
        out = subprocess.run([exe, "api-key", "create", "--role", "admin"], env=self.env, cwd=self.src, check=True,
                             capture_output=True, text=True, timeout=60).stdout
        self.key = out.strip().splitlines()[-1].strip()
        self.procs.start("sink", [PY, str(BENCH / "sink.py"), str(self.smtp_port), str(self.ctl_port)])
        self.procs.start("api", [PY, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1", "--port", str(self.port),
                                 "--workers", "1", "--loop", "uvloop", "--http", "httptools", "--no-access-log"],
                         env=self.env, cwd=self.src)
        self.wait_for("sink", lambda: self.sink() is not None, 20)
        self.wait_for("API /healthz", lambda: self.http("GET", "/healthz", timeout=2)[0] == 200, 60)
        smtp = {"host": "127.0.0.1", "port": self.smtp_port, "tls": "none", "authentication_required": False,
                "from_address": "bench@example.com", "per_minute_limit": 0}
        code, body = self.http("PATCH", "/providers/smtp", smtp)
        if code == 405:  # a revision from before PATCH (--ref), where PUT took these fields
            code, body = self.http("PUT", "/providers/smtp", smtp)
        assert code < 300, ("PATCH /providers/smtp", code, body)
        code, params = self.http("GET", "/parameters")
        assert code == 200, ("GET /parameters", code, params)
        params.update(batch_provider="smtp", attachment_size_limit_mb=30, batch_processing_enabled=True)
        for k in ("effective_email_expiration_days", "effective_history_retention_days"):
            params.pop(k, None)
        code, body = self.http("PUT", "/parameters", params)
        assert code < 300, ("PUT /parameters", code, body)

    def down(self) -> None:
        self.procs.stop_all()
        with contextlib.suppress(Exception):
            subprocess.run(["psql", f"{PG}/postgres", "-XAtqc", f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)"],
                           capture_output=True, timeout=60)
        with contextlib.suppress(Exception):
            self.redis("FLUSHDB")
        shutil.rmtree(self.vardir, ignore_errors=True)

    def reset(self) -> None:
        """Empty the message tables and Redis between phases (workers stopped)."""
        self.psql("TRUNCATE message, message_attachment, delivery_attempt RESTART IDENTITY CASCADE")
        self.redis("FLUSHDB")

    def set_batch(self, on: bool) -> None:
        # Directly in the database: PUT /parameters would enqueue a drain job.
        self.psql(f"UPDATE email_parameters SET batch_processing_enabled = {'true' if on else 'false'}")

    def start_workers(self, n: int) -> list[int]:
        pids = []
        for i in range(n):
            name = f"worker{i}"
            p = self.procs.start(name, [PY, "-m", "arq", "worker.main.WorkerSettings"], env=self.env, cwd=self.src)
            self.workers.append(name)
            pids.append(p.pid)
        want = {str(p) for p in pids}

        def ready() -> bool:
            keys = [k for k in self.redis("--scan", "--pattern", "outbox:worker:*").split() if k]
            seen = {json.loads(self.redis("GET", k)).get("pid") for k in keys}
            return want <= {str(s) for s in seen}

        self.wait_for(f"{n} worker heartbeat(s)", ready, 60, 0.2)
        time.sleep(0.5)  # let the start-up reconcile (run_at_startup) finish: it finds nothing due
        return pids

    def stop_workers(self) -> None:
        for name in self.workers:
            self.procs.stop(name)
        self.workers = []

    def enqueue_drains(self) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings

        from app.messages import jobs

        slots = int(self.env.get("OUTBOX_DRAIN_SLOTS", str(APP_DEFAULTS.drain_slots)))

        async def go() -> None:
            pool = await create_pool(RedisSettings.from_dsn(REDIS_URL))
            try:
                run = uuid.uuid4().hex[:6]
                for i in range(max(1, slots)):
                    await jobs.enqueue(pool, self.queue, "more", "bench", run, i)
            finally:
                await pool.aclose()

        asyncio.run(go())

    # -- load
    def loadgen(self, mode: str, n: int, concurrency: int, warmup: int = 0, timeout: float = 300,
                **extra: Any) -> dict:
        spec = {"port": self.port, "key": self.key, "mode": mode, "n": n, "concurrency": concurrency,
                "warmup": warmup, "timeout": timeout, **extra}
        return run_json([PY, str(BENCH / "loadgen.py"), json.dumps(spec)], timeout + 60)

    def new_key(self, role: str = "service") -> str:
        out = subprocess.run([str(BIN / "outbox"), "api-key", "create", "--role", role], env=self.env, cwd=self.src,
                             check=True, capture_output=True, text=True, timeout=60).stdout
        return out.strip().splitlines()[-1].strip()

    def preload(self, n: int, bulk: int = 500) -> None:
        reqs = max(1, n // bulk)
        r = self.loadgen("bulk", reqs, 2, bulk_size=min(bulk, n), timeout=300)
        assert r["ok"] == reqs, ("preload", r)
        queued = self.count("queued")
        assert queued == n, f"preload: {queued} queued, expected {n}"


# ---------------------------------------------------------------- phases

def phase_ingest(lv: Live, a: argparse.Namespace, profile: bool = False) -> dict:
    lv.set_batch(True)
    before = lv.count("queued")
    prof = None
    if profile:
        prof = start_pyspy(lv, lv.procs.procs["api"].pid, "api-ingest", a.profile_seconds)
    api = lv.procs.procs["api"].pid
    pg0 = lv.pgstat()
    cw = CpuWindow({"api": api, "sink": lv.procs.procs["sink"].pid})
    cw.start()
    r = lv.loadgen("single", a.ingest_n, 32, warmup=a.ingest_warmup, timeout=120)
    r["cpu_cores"] = cw.stop()
    r["cpu_top_others"] = cw.top_others
    if prof:
        finish_pyspy(prof)
    stored = lv.count("queued") - before
    r["stored"] = stored
    r["verified"] = stored == r["ok"] + a.ingest_warmup and r["ok"] == a.ingest_n
    r["api_vmhwm_mb"] = round(vm_kb(api, "VmHWM") / 1024, 1)
    r["pg_per_request"] = lv.pgstat_delta(pg0, a.ingest_n + a.ingest_warmup)
    log(f"ingest: {r['req_per_s']:.0f} req/s p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms "
        f"loadgen {r['loadgen_cores']:.2f} cores, stored {stored} verified={r['verified']} cpu {r['cpu_cores']} "
        f"others {cw.top_others} pg/request {r['pg_per_request']}")
    return r


def phase_bulk(lv: Live, a: argparse.Namespace) -> dict:
    before = lv.count("queued")
    cw = CpuWindow({"api": lv.procs.procs["api"].pid})
    cw.start()
    r = lv.loadgen("bulk", a.bulk_requests, a.bulk_concurrency, warmup=1, bulk_size=a.bulk_size, timeout=120)
    r["cpu_cores"] = cw.stop()
    r["cpu_top_others"] = cw.top_others
    stored = lv.count("queued") - before
    r["stored"] = stored
    r["verified"] = stored == (r["ok"] + 1) * a.bulk_size and r["ok"] == a.bulk_requests
    log(f"bulk: {r['msgs_per_s']:.0f} msgs/s ({r['req_per_s']:.1f} req/s of {a.bulk_size}), "
        f"p50 {r['p50_ms']:.0f} ms, verified={r['verified']}, cpu {r['cpu_cores']}")
    return r


def phase_ceiling(lv: Live, conns: int, n: int) -> dict:
    c0 = lv.sink()
    named = {"sink": lv.procs.procs["sink"].pid}
    cw = CpuWindow(named)
    cw.start()
    r = run_json([PY, str(BENCH / "ceiling.py"), str(lv.smtp_port), str(conns), str(n), "120"], 200)
    r["cpu_cores"] = cw.stop()
    r["cpu_top_others"] = cw.top_others
    c1 = lv.sink()
    r["sink_counted"] = c1[0] - c0[0]
    r["sink_connections"] = c1[1] - c0[1]
    r["verified"] = r["sink_counted"] == n == r["sent"]
    log(f"ceiling {conns} conns: {r['msgs_per_s']:.0f} msgs/s, sink counted {r['sink_counted']}, "
        f"cpu {r['cpu_cores']} client {r['client_cores']:.2f} others {cw.top_others}")
    return r


def phase_delivery(lv: Live, workers: int, n: int, a: argparse.Namespace, profile: bool = False) -> dict:
    lv.reset()
    lv.set_batch(False)
    lv.preload(n)
    lv.redis("FLUSHDB")  # the preload's drain jobs: the timed drain starts below
    pids = lv.start_workers(workers)
    lv.sink("RESET")
    named = {"api": lv.procs.procs["api"].pid, "sink": lv.procs.procs["sink"].pid,
             **{f"worker{i}": p for i, p in enumerate(pids)}}
    cw = CpuWindow(named)
    prof = None
    if profile:
        prof = start_pyspy(lv, pids[0], f"worker-delivery-{workers}w", a.profile_seconds)
    pg0 = lv.pgstat()
    cw.start()
    t0_wall = time.time()
    t0 = time.monotonic()
    lv.set_batch(True)
    lv.enqueue_drains()
    timeout = max(60.0, n / 100)
    deadline = t0 + timeout
    sink_done = None
    rss_peak = dict.fromkeys(pids, 0)
    while time.monotonic() < deadline:
        cnt = lv.sink()[0]
        for p in pids:
            rss_peak[p] = max(rss_peak[p], vm_kb(p, "VmRSS"))
        if cnt >= n:
            sink_done = time.monotonic()
            break
        time.sleep(0.05)
    cpu = cw.stop()
    if prof:
        finish_pyspy(prof)
    sent = 0
    for _ in range(100):  # the last batch's UPDATE commits right after the sink has counted it
        sent = lv.count("sent")
        if sent >= n or time.monotonic() > deadline + 10:
            break
        time.sleep(0.1)
    api_done = time.monotonic()
    last_sent = float(lv.psql("SELECT coalesce(extract(epoch FROM max(sent_at)), 0) FROM message"))
    first_sent = float(lv.psql("SELECT coalesce(extract(epoch FROM min(sent_at)), 0) FROM message"))
    statuses = dict(line.split("|") for line in lv.psql(
        "SELECT status, count(*) FROM message GROUP BY status").splitlines() if line)
    attempts = int(lv.psql("SELECT count(*) FROM delivery_attempt"))
    sink = lv.sink()
    vmhwm = {f"worker{i}": round(vm_kb(p, "VmHWM") / 1024, 1) for i, p in enumerate(pids)}
    lv.stop_workers()
    pg_per_msg = lv.pgstat_delta(pg0, n)
    elapsed_db = last_sent - t0_wall if last_sent else float("nan")
    r = {
        "workers": workers, "n": n, "sent": sent, "sink_counted": sink[0], "sink_connections": sink[1],
        "statuses": statuses, "attempt_rows": attempts,
        "seconds_db": elapsed_db, "msgs_per_s": n / elapsed_db if sent >= n and elapsed_db > 0 else 0.0,
        "seconds_sink": (sink_done - t0) if sink_done else None,
        "msgs_per_s_sink": n / (sink_done - t0) if sink_done else 0.0,
        "seconds_api_confirmed": api_done - t0,
        "first_sent_after_s": first_sent - t0_wall if first_sent else None,
        "cpu_cores": cpu, "cpu_top_others": cw.top_others, "worker_vmhwm_mb": vmhwm, "pg_per_message": pg_per_msg,
        "worker_rss_peak_mb": {f"worker{i}": round(rss_peak[p] / 1024, 1) for i, p in enumerate(pids)},
        "verified": sent == n and sink[0] == n and attempts == n,
    }
    log(f"delivery {workers}w: {r['msgs_per_s']:.0f} msgs/s (db), {r['msgs_per_s_sink']:.0f} (sink), "
        f"sent {sent}/{n}, sink {sink[0]}, conns {sink[1]}, cpu {cpu} others {cw.top_others}")
    return r


def phase_memory(lv: Live, a: argparse.Namespace) -> dict:
    lv.reset()
    lv.set_batch(False)
    n, size = a.mem_n, a.mem_mb * 1024 * 1024
    api_pid = lv.procs.procs["api"].pid
    r0 = lv.loadgen("attach", n, 2, attachment_bytes=size, timeout=600)
    queued = lv.count("queued")
    assert r0["ok"] == n and queued == n, ("attachment submit", r0, queued)
    lv.redis("FLUSHDB")
    pids = lv.start_workers(1)
    pid = pids[0]
    idle_hwm = vm_kb(pid, "VmHWM")
    lv.sink("RESET")
    t0 = time.monotonic()
    lv.set_batch(True)
    lv.enqueue_drains()
    deadline = t0 + max(120.0, n * 3.0)
    rss_peak = 0
    sent = 0
    last_poll = 0.0
    while time.monotonic() < deadline:
        rss_peak = max(rss_peak, vm_kb(pid, "VmRSS"))
        if time.monotonic() - last_poll > 0.5:
            last_poll = time.monotonic()
            sent = lv.count("sent")
            if sent >= n:
                break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    hwm = vm_kb(pid, "VmHWM")
    sink = lv.sink()
    lv.stop_workers()
    r = {"n": n, "attachment_mb": a.mem_mb, "sent": sent, "sink_counted": sink[0],
         "sink_mb": round(sink[2] / 1e6, 1), "seconds": elapsed,
         "worker_peak_rss_mb": round(hwm / 1024, 1), "worker_rss_sampled_peak_mb": round(rss_peak / 1024, 1),
         "worker_idle_rss_mb": round(idle_hwm / 1024, 1),
         "api_peak_rss_mb": round(vm_kb(api_pid, "VmHWM") / 1024, 1),
         "submit_req_per_s": r0["req_per_s"], "verified": sent == n and sink[0] == n}
    log(f"memory: worker VmHWM {r['worker_peak_rss_mb']} MB (idle {r['worker_idle_rss_mb']}), sent {sent}/{n} "
        f"in {elapsed:.1f} s, sink {sink[0]}")
    lv.reset()
    return r


# ---------------------------------------------------------------- py-spy

def start_pyspy(lv: Live, pid: int, name: str, seconds: int) -> list[subprocess.Popen]:
    RESULTS.mkdir(exist_ok=True)
    spy = str(BIN / "py-spy")
    base = [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100", "--nonblocking"]
    # Two samplers on the same process (non-blocking: they read its memory, they do not stop it): collapsed
    # stacks for bench/profile_summary.py, and a flame graph to look at. Idle (waiting) samples excluded.
    return [
        subprocess.Popen(base + ["--format", "raw", "-o", str(RESULTS / f"{name}.collapsed")],
                         stdout=subprocess.DEVNULL, stderr=open(lv.logdir / f"pyspy-{name}-raw.log", "w")),
        subprocess.Popen(base + ["--format", "flamegraph", "-o", str(RESULTS / f"{name}.svg")],
                         stdout=subprocess.DEVNULL, stderr=open(lv.logdir / f"pyspy-{name}-svg.log", "w")),
    ]


def finish_pyspy(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        try:
            p.wait(120)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGINT)
            p.wait(10)


# ---------------------------------------------------------------- summary

def wait_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (bounded) until the box is nearly idle before a run: other users' tests skew every figure.
    Returns the last busy reading (cores); the figure is recorded with the run."""
    deadline = time.monotonic() + max_wait
    busy = 0.0
    while True:
        a = box_ticks()
        time.sleep(1.0)
        b = box_ticks()
        busy = (b[0] - a[0]) / max(1, b[1] - a[1]) * (os.cpu_count() or 1)
        if busy < threshold or time.monotonic() > deadline:
            return round(busy, 2)
        log(f"box busy ({busy:.2f} cores used by others): waiting for quiet")


def stat(values: list[float]) -> dict:
    v = [x for x in values if x is not None]
    if not v:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def fmt(s: dict, digits: int = 0) -> str:
    if not s or s.get("median") is None:
        return "-"
    f = f"{{:,.{digits}f}}"
    if s["n"] == 1:
        return f.format(s["median"])
    return f"{f.format(s['median'])} [{f.format(s['min'])}-{f.format(s['max'])}]"


def summarise(runs: list[dict], memory: list[dict]) -> dict:
    g = lambda path: [eval_path(r, path) for r in runs]  # noqa: E731
    s: dict[str, Any] = {
        "ingest_rps": stat(g("ingest.req_per_s")), "ingest_p50_ms": stat(g("ingest.p50_ms")),
        "ingest_p99_ms": stat(g("ingest.p99_ms")), "ingest_loadgen_cores": stat(g("ingest.loadgen_cores")),
        "bulk_msgs_per_s": stat(g("bulk.msgs_per_s")), "bulk_p50_ms": stat(g("bulk.p50_ms")),
        "bulk_loadgen_cores": stat(g("bulk.loadgen_cores")),
        "ingest_cpu_api": stat(g("ingest.cpu_cores.api")), "ingest_cpu_postgres": stat(g("ingest.cpu_cores.postgres")),
        "ingest_cpu_others": stat(g("ingest.cpu_cores.others")), "bulk_cpu_api": stat(g("bulk.cpu_cores.api")),
        "bulk_cpu_postgres": stat(g("bulk.cpu_cores.postgres")),
    }
    for w in (1, 2):
        s[f"delivery_{w}w"] = stat(g(f"delivery_{w}w.msgs_per_s"))
        s[f"delivery_{w}w_sink"] = stat(g(f"delivery_{w}w.msgs_per_s_sink"))
        s[f"ceiling_{w}w"] = stat(g(f"ceiling_{w}w.msgs_per_s"))
        ratios = [eval_path(r, f"delivery_{w}w.msgs_per_s") / eval_path(r, f"ceiling_{w}w.msgs_per_s")
                  for r in runs if eval_path(r, f"ceiling_{w}w.msgs_per_s")]
        s[f"delivery_{w}w_vs_ceiling"] = stat(ratios)
        for k in ("api", "sink", "postgres", "redis", "box", "bench_runner", "others",
                  *[f"worker{i}" for i in range(w)]):
            s[f"delivery_{w}w_cpu_{k}"] = stat(g(f"delivery_{w}w.cpu_cores.{k}"))
        s[f"ceiling_{w}w_cpu_sink"] = stat(g(f"ceiling_{w}w.cpu_cores.sink"))
        s[f"ceiling_{w}w_client_cores"] = stat(g(f"ceiling_{w}w.client_cores"))
    s["worker_peak_rss_mb"] = stat([m["worker_peak_rss_mb"] for m in memory])
    s["all_verified"] = all(
        eval_path(r, f"{p}.verified") for r in runs for p in ("ingest", "bulk", "delivery_1w", "delivery_2w",
                                                                "ceiling_1w", "ceiling_2w") if p in r
    ) and all(m["verified"] for m in memory)
    return s


def eval_path(d: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def table(s: dict, meta: dict) -> str:
    def ok(val: Any, good: bool) -> str:
        return "-" if val is None else ("yes" if good else "**no**")

    m = lambda k: s[k]["median"]  # noqa: E731
    conns1, conns2 = meta["smtp_connections"], meta["smtp_connections"] * 2
    rows = [
        ("Ingest POST /messages, c=32 (req/s)", fmt(s["ingest_rps"]), ">= 1,000",
         ok(m("ingest_rps"), (m("ingest_rps") or 0) >= TARGETS["ingest_rps"])),
        ("Ingest p50 (ms)", fmt(s["ingest_p50_ms"], 1), "", ""),
        ("Ingest p99 (ms)", fmt(s["ingest_p99_ms"], 1), "< 100",
         ok(m("ingest_p99_ms"), (m("ingest_p99_ms") or 1e9) < TARGETS["ingest_p99_ms"])),
        (f"Bulk submit, {meta['bulk_size']}/request, c={meta['bulk_concurrency']} (msgs/s)",
         fmt(s["bulk_msgs_per_s"]), ">= 10,000",
         ok(m("bulk_msgs_per_s"), (m("bulk_msgs_per_s") or 0) >= TARGETS["bulk_msgs_per_s"])),
        (f"Delivery, 1 worker, {meta['delivery_n']:,} backlog (msgs/s)", fmt(s["delivery_1w"]), ">= 1,500",
         ok(m("delivery_1w"), (m("delivery_1w") or 0) >= TARGETS["delivery_1w"])),
        (f"Ceiling, aiosmtplib x{conns1} conns (msgs/s)", fmt(s["ceiling_1w"]), "", ""),
        ("Delivery 1 worker / ceiling", fmt(s["delivery_1w_vs_ceiling"], 2), ">= 0.50",
         ok(m("delivery_1w_vs_ceiling"), (m("delivery_1w_vs_ceiling") or 0) >= TARGETS["delivery_vs_ceiling"])),
        (f"Delivery, 2 workers, {meta['delivery_n']:,} backlog (msgs/s)", fmt(s["delivery_2w"]), "", ""),
        (f"Ceiling, aiosmtplib x{conns2} conns (msgs/s)", fmt(s["ceiling_2w"]), "", ""),
        ("Delivery 2 workers / ceiling", fmt(s["delivery_2w_vs_ceiling"], 2), ">= 0.50",
         ok(m("delivery_2w_vs_ceiling"), (m("delivery_2w_vs_ceiling") or 0) >= TARGETS["delivery_vs_ceiling"])),
        (f"Worker peak RSS, {meta['mem_n']} x {meta['mem_mb']} MB attachments (MB)", fmt(s["worker_peak_rss_mb"]),
         "< 300", ok(m("worker_peak_rss_mb"), (m("worker_peak_rss_mb") or 1e9) < TARGETS["worker_peak_rss_mb"])),
    ]
    out = ["| measure | median [min-max] | target | met |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    out.append("")
    out.append("CPU during delivery (cores, median; 'others' = every other process on the box):")
    out.append("")
    out.append("| process | 1 worker | 2 workers |")
    out.append("|---|---|---|")
    for k in ("worker0", "worker1", "api", "postgres", "redis", "sink", "bench_runner", "others", "box"):
        a1 = fmt(s.get(f"delivery_1w_cpu_{k}", {}), 2)
        a2 = fmt(s.get(f"delivery_2w_cpu_{k}", {}), 2)
        out.append(f"| {k} | {a1} | {a2} |")
    out.append("")
    out.append("CPU during ingest / bulk (cores, median):")
    out.append("")
    out.append("| process | ingest (single) | bulk |")
    out.append("|---|---|---|")
    out.append(f"| api | {fmt(s['ingest_cpu_api'], 2)} | {fmt(s['bulk_cpu_api'], 2)} |")
    out.append(f"| postgres | {fmt(s['ingest_cpu_postgres'], 2)} | {fmt(s['bulk_cpu_postgres'], 2)} |")
    out.append(f"| load generator | {fmt(s['ingest_loadgen_cores'], 2)} | {fmt(s['bulk_loadgen_cores'], 2)} |")
    out.append(f"| others | {fmt(s['ingest_cpu_others'], 2)} | |")
    out.append("")
    out.append("Ceiling runs (cores, median):")
    out.append("")
    out.append("| | 1-worker connection count | 2-worker connection count |")
    out.append("|---|---|---|")
    out.append(f"| ceiling client / sink during ceiling | {fmt(s['ceiling_1w_client_cores'], 2)} / "
               f"{fmt(s['ceiling_1w_cpu_sink'], 2)} | {fmt(s['ceiling_2w_client_cores'], 2)} / "
               f"{fmt(s['ceiling_2w_cpu_sink'], 2)} |")
    out.append("")
    out.append(f"All counts verified (DB stored/sent = requested, sink counted = sent): {s['all_verified']}")
    return "\n".join(out)


def versions() -> dict:
    from importlib.metadata import version

    out = {"python": platform.python_version(), "cpus": os.cpu_count()}
    for pkg in ("fastapi", "uvicorn", "uvloop", "httptools", "arq", "redis", "SQLAlchemy", "asyncpg", "aiosmtplib",
                "aiosmtpd"):
        with contextlib.suppress(Exception):
            out[pkg] = version(pkg)
    with contextlib.suppress(Exception):
        out["postgres"] = subprocess.run(["psql", f"{PG}/postgres", "-XAtqc", "SHOW server_version"],
                                         capture_output=True, text=True, timeout=10).stdout.strip()
    with contextlib.suppress(Exception):
        out["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True, timeout=10).stdout.strip()
    return out


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one run, small N: a smoke check (< 60 s)")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--delivery-n", type=int, default=None)
    ap.add_argument("--profile", action="store_true",
                    help="after the measured runs, one extra run with py-spy on the API (ingest) and the worker "
                         "(delivery, 1 worker); writes bench/results/*.collapsed (not counted in the figures)")
    ap.add_argument("--profile-only", action="store_true", help="only the profiled run")
    ap.add_argument("--profile-seconds", type=int, default=8)
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--only", default=None,
                    help="comma-separated phases to run (ingest, bulk, delivery), e.g. --only ingest for an A/B of "
                         "the submit path")
    ap.add_argument("--ingest-n", dest="ingest_n_arg", type=int, default=None,
                    help="requests measured in the ingest phase")
    ap.add_argument("--memory-runs", type=int, default=1,
                    help="runs that include the attachment-memory phase (100 x 10 MB takes minutes; default 1)")
    ap.add_argument("--wait-quiet", type=float, default=None,
                    help="seconds to wait, at most, for the box to be idle before each run (default 60; quick 0)")
    ap.add_argument("--out", default=str(RESULTS / "latest.json"))
    ap.add_argument("--snapshot", action="store_true",
                    help="benchmark a frozen copy of the working tree (taken at start) instead of the live tree")
    ap.add_argument("--ref", default=None,
                    help="benchmark this git revision (exported with git archive to a temporary directory) "
                         "instead of the working tree, e.g. --ref HEAD while others edit the tree")
    ap.add_argument("--scale", default=None,
                    help="scale mode (bench/scale.py): backlog sizes, e.g. 10000,1000000: delivery, high-priority "
                         "latency, monitoring and listing latencies, bulk submit and rows read at each size")
    ap.add_argument("--scale-keys", type=int, default=2,
                    help="scale mode: submitting keys sharing the bulk backlog (each submits its part in turn)")
    ap.add_argument("--scale-window", type=float, default=60.0,
                    help="scale mode: seconds of delivery measured at each size (less if the backlog drains)")
    a = ap.parse_args()
    a.runs = a.runs or (1 if a.quick else 3)
    if a.wait_quiet is None:
        a.wait_quiet = 0.0 if a.quick else 60.0
    a.delivery_n = a.delivery_n or (1000 if a.quick else 10_000)
    a.ingest_n, a.ingest_warmup = (600, 100) if a.quick else (5000, 300)
    a.ingest_n = a.ingest_n_arg if a.ingest_n_arg else a.ingest_n
    phases = set(a.only.split(",")) if a.only else {"ingest", "bulk", "delivery"}
    a.bulk_size, a.bulk_concurrency = 500, 2
    a.bulk_requests = 4 if a.quick else 20
    a.mem_n, a.mem_mb = (5, 10) if a.quick else (100, 10)
    a.ceiling_n = a.delivery_n

    smtp_conns = int(os.environ.get("OUTBOX_SMTP_CONNECTIONS", str(APP_DEFAULTS.smtp_connections)))
    meta = {"mode": "quick" if a.quick else "full", "runs": a.runs, "delivery_n": a.delivery_n,
            "ingest_n": a.ingest_n, "ingest_warmup": a.ingest_warmup, "ingest_concurrency": 32,
            "bulk_size": a.bulk_size, "bulk_requests": a.bulk_requests, "bulk_concurrency": a.bulk_concurrency,
            "mem_n": a.mem_n, "mem_mb": a.mem_mb, "smtp_connections": smtp_conns,
            "claim_batch": int(os.environ.get("OUTBOX_CLAIM_BATCH", str(APP_DEFAULTS.claim_batch_size))),
            "drain_slots": int(os.environ.get("OUTBOX_DRAIN_SLOTS", str(APP_DEFAULTS.drain_slots))),
            "ingest_note": "no worker process running during ingest and bulk",
            "delivery_note": "backlog pre-loaded with bulk while batch processing is off; workers started and "
                             "ready (heartbeat); t0 = batch processing on + drain jobs enqueued; msgs/s = N / "
                             "(max(sent_at) - t0)",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions()}
    src = ROOT
    if a.snapshot:
        # A frozen copy of the working tree (others keep editing it while the benchmark runs).
        src = Path(tempfile.mkdtemp(prefix="outbox-bench-src-"))
        shutil.copytree(ROOT, src, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".venv", ".git", "var", "__pycache__", "*_cache", "results", "*.egg-info", "tests"))
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "app", "worker"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        meta["code"] = f"snapshot of the working tree at {meta['versions'].get('git')}" + (
            f" with {len(dirty.splitlines())} uncommitted app/worker changes" if dirty else "")
    elif a.ref:
        src = Path(tempfile.mkdtemp(prefix="outbox-bench-src-"))
        rev = subprocess.run(["git", "rev-parse", "--short", a.ref], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        meta["code"] = f"git {rev} (exported)"
    else:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "app", "worker"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        meta["code"] = f"working tree at {meta['versions'].get('git')}" + (" with uncommitted app/worker changes"
                                                                          if dirty else "")
    if src != ROOT:
        # The editable install maps app.* / worker.* back to the working tree for any module missing from the
        # copy: refuse to benchmark a mix.
        chk = subprocess.run([PY, "-c", "import sys, app.main, worker.main, app.cli; print('\\n'.join("
                              "getattr(m, '__file__', '') or '' for n, m in list(sys.modules.items()) "
                              "if n.split('.')[0] in ('app', 'worker')))"],
                             cwd=src, env=dict(os.environ, PYTHONPATH=str(src)), capture_output=True, text=True)
        outside = [f for f in chk.stdout.split() if f and not f.startswith(str(src))]
        if chk.returncode != 0 or outside:
            print(f"the code under test is not self-contained ({chk.stderr[-500:]}): modules from outside the "
                  f"copy: {outside}", file=sys.stderr)
            shutil.rmtree(src, ignore_errors=True)
            return 2
    logdir = Path(tempfile.mkdtemp(prefix="outbox-bench-logs-"))
    log(f"logs in {logdir}")
    procs = Procs(logdir)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    if a.scale:
        import scale

        sizes = [int(x.replace("_", "")) for x in a.scale.split(",") if x.strip()]
        out = Path(a.out) if a.out != str(RESULTS / "latest.json") else RESULTS / "scale.json"
        try:
            return scale.main(sizes, a.scale_window, procs, logdir, a, src, out)
        except KeyboardInterrupt:
            log("interrupted: cleaning up")
            return 130
        finally:
            procs.stop_all()
            if src != ROOT:
                shutil.rmtree(src, ignore_errors=True)
    runs: list[dict] = []
    memory: list[dict] = []
    t_start = time.monotonic()
    lv: Live | None = None
    try:
        plan = [] if a.profile_only else list(range(a.runs))
        for i in plan:
            quiet = wait_quiet(a.wait_quiet)
            lv = Live(procs, logdir, a, src)
            log(f"run {i + 1}/{a.runs}: database {lv.db}, box busy before the run {quiet} cores")
            try:
                lv.up()
                run: dict[str, Any] = {"database": lv.db, "box_busy_before": quiet}
                if "ingest" in phases:
                    run["ingest"] = phase_ingest(lv, a)
                if "bulk" in phases:
                    run["bulk"] = phase_bulk(lv, a)
                order = (1, 2) if i % 2 == 0 else (2, 1)  # interleave
                for w in order if "delivery" in phases else ():
                    run[f"ceiling_{w}w"] = phase_ceiling(lv, smtp_conns * w, a.ceiling_n)
                    run[f"delivery_{w}w"] = phase_delivery(lv, w, a.delivery_n, a)
                if not a.no_memory and i < a.memory_runs:
                    memory.append(phase_memory(lv, a))
                    run["memory"] = memory[-1]
                runs.append(run)
            finally:
                lv.down()
                lv = None
        if a.profile or a.profile_only:
            lv = Live(procs, logdir, a, src)
            log(f"profiled run: database {lv.db}")
            try:
                lv.up()
                a.ingest_n = max(a.ingest_n, 8000)
                prof = {"ingest": phase_ingest(lv, a, profile=True),
                        "delivery_1w": phase_delivery(lv, 1, max(a.delivery_n, 15_000), a, profile=True)}
                (RESULTS / "profile-run.json").write_text(json.dumps(prof, indent=2, default=str))
            finally:
                lv.down()
                lv = None
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    finally:
        if lv is not None:
            lv.down()
        procs.stop_all()
        if src != ROOT:
            shutil.rmtree(src, ignore_errors=True)
    if not runs:
        return 0
    s = summarise(runs, memory)
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    RESULTS.mkdir(exist_ok=True)
    Path(a.out).write_text(json.dumps({"meta": meta, "summary": s, "runs": runs}, indent=2, default=str))
    print(f"\n## Outbox benchmark ({meta['mode']}, {a.runs} run(s), {meta['seconds']} s; {meta['code']})\n")
    print(table(s, meta))
    print(f"\nResults: {Path(a.out).relative_to(ROOT) if Path(a.out).is_relative_to(ROOT) else a.out}; "
          f"logs: {logdir}")
    return 0 if s["all_verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
