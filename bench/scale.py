"""Scale mode of the benchmark (issue 17): what a growing bulk backlog costs.

Run from the project root:   .venv/bin/python bench/run.py --scale 10000,200000 [--scale-window 60] [--scale-keys 2]

For each backlog size N, on a fresh database (PostgreSQL, the API, 1 worker, the counting sink, as `make bench`):

1. Backlog: N - 10,000 bulk messages submitted with batch processing off (POST /messages/bulk, 500 per request,
   2 at a time: the `low` lane), then the last 10,000 timed: **bulk submit msgs/s at N rows**. ANALYZE message
   (what autovacuum does after such a load). `--scale-keys K` (default 2) submitting keys share both parts,
   each key submitting its share after the previous one (the first key's backlog is older than the next's).
2. Latencies with N messages waiting (median and p95 of 20 calls each, API otherwise idle): GET /status,
   GET /metrics, GET /messages?status=queued&limit=50 (the first page), and the page after it by cursor; the
   PostgreSQL plan of the first page.
3. Delivery: one worker started; batch processing on and drain jobs enqueued (t0). Meanwhile a high-priority
   message is submitted once a second (POST /messages, "priority": "high"). After `--scale-window` seconds (or
   when everything is sent): **delivery msgs/s** (bulk sent in the window / window), **high-priority submit ->
   sent** p50/p99/max (sent_at - created_at, both stamped by Outbox), and **rows read per delivered message**
   from pg_stat_user_tables (seq_tup_read + idx_tup_fetch of `message`, delta over the window, divided by the
   messages sent in it; includes the API's reads during the window), and **fairness**: the bulk each key got
   sent in the window and when the last key's first message went out (first come, first served would send
   none of it before the first key's backlog).

Results: bench/results/scale.json and a markdown table on stdout. The machine may be shared: the table reports
the CPU used by processes that are not part of the benchmark; compare ratios within one run.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from run import RESULTS, CpuWindow, Live, log

MEASURED_BULK = 10_000
BULK_SIZE = 500


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _timed(lv: Live, path: str, n: int = 20) -> dict[str, float]:
    out = []
    for _ in range(n):
        req = urllib.request.Request(f"http://127.0.0.1:{lv.port}{path}",
                                     headers={"Authorization": f"Bearer {lv.key}"})
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
            code = resp.status
        out.append((time.perf_counter() - t) * 1000)
        assert code == 200, (path, code)
    return {"p50_ms": round(statistics.median(out), 1), "p95_ms": round(_pct(out, 0.95), 1)}


def _rows_read(lv: Live) -> int:
    row = lv.psql("SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables "
                  "WHERE relname = 'message'")
    return int(row or 0)


def _reads_by_source(lv: Live) -> dict[str, int]:
    """Rows read from `message` by sequential scans and per index (pg_stat_user_tables / _indexes)."""
    out = {"seq_tup_read": int(lv.psql("SELECT coalesce(seq_tup_read, 0) FROM pg_stat_user_tables "
                                       "WHERE relname = 'message'") or 0),
           "seq_scan": int(lv.psql("SELECT coalesce(seq_scan, 0) FROM pg_stat_user_tables "
                                   "WHERE relname = 'message'") or 0)}
    for line in lv.psql("SELECT indexrelname, idx_tup_fetch FROM pg_stat_user_indexes "
                        "WHERE relname = 'message'").splitlines():
        name, n = line.split("|")
        out[name] = int(n)
    return out


def one_size(lv: Live, n: int, window: float, keys: int = 1) -> dict[str, Any]:
    r: dict[str, Any] = {"backlog": n, "keys": keys}
    lv.set_batch(False)
    submitters = [lv.key] + [lv.new_key() for _ in range(keys - 1)]
    key_ids = [int(x) for x in lv.psql("SELECT id FROM api_key ORDER BY id").split()]
    # 1. the backlog, then the measured bulk submit at N rows; each key submits its part after the previous key
    # (the first key's whole part is older than the next one's: what first come, first served would drain first)
    build = n - MEASURED_BULK
    built = 0
    t = time.monotonic()
    if build > 0:
        for key in submitters:
            reqs = build // keys // BULK_SIZE
            got = lv.loadgen("bulk", reqs, 2, bulk_size=BULK_SIZE, timeout=max(300.0, build / 500), key=key)
            assert got["ok"] == reqs, ("backlog", got)
            built += reqs * BULK_SIZE
    r["backlog_build_s"] = round(time.monotonic() - t, 1)
    cw = CpuWindow({"api": lv.procs.procs["api"].pid})
    cw.start()
    measured = [lv.loadgen("bulk", MEASURED_BULK // keys // BULK_SIZE, 2, bulk_size=BULK_SIZE, timeout=300, key=key)
                for key in submitters]
    submitted = sum(g["ok"] for g in measured) * BULK_SIZE
    r["bulk_submit"] = {"msgs_per_s": round(submitted / sum(g["seconds"] for g in measured)),
                        "p50_ms": round(statistics.mean(g["p50_ms"] for g in measured)),
                        "ok": sum(g["ok"] for g in measured), "cpu_cores": cw.stop(), "cpu_top_others": cw.top_others}
    n = r["backlog"] = built + submitted
    lv.redis("FLUSHDB")  # the submissions' drain jobs: the timed drain starts below
    lv.psql("ANALYZE message")
    queued = lv.count("queued")
    assert queued == n, f"{queued} queued, expected {n}"
    log(f"scale {n}: backlog built in {r['backlog_build_s']} s, bulk submit {r['bulk_submit']['msgs_per_s']} "
        f"msgs/s at {n} rows")
    # 2. monitoring and listing latencies with the backlog waiting
    r["status"] = _timed(lv, "/status")
    r["metrics"] = _timed(lv, "/metrics")
    r["first_page"] = _timed(lv, "/messages?status=queued&limit=50")
    _, page = lv.http("GET", "/messages?status=queued&limit=50")
    r["next_page"] = _timed(lv, f"/messages?status=queued&limit=50&cursor={page['next_cursor']}")
    r["first_page_plan"] = lv.psql("EXPLAIN SELECT id FROM message WHERE status IN ('queued') "
                                   "ORDER BY id DESC LIMIT 50").splitlines()
    log(f"scale {n}: /status {r['status']}, /metrics {r['metrics']}, first page {r['first_page']}")
    # 3. delivery of the backlog with high-priority messages submitted once a second
    pids = lv.start_workers(1)
    lv.sink("RESET")
    cw = CpuWindow({"api": lv.procs.procs["api"].pid, "sink": lv.procs.procs["sink"].pid, "worker0": pids[0]})
    # A backend flushes its table counters when idle, but at most once a second and otherwise 10 s later
    # (PostgreSQL 15's PGSTAT_IDLE_INTERVAL): without this wait, the reads of the /status, /metrics and page
    # calls above landed in the delivery window's rows read.
    time.sleep(11)
    rows0 = _rows_read(lv)
    src0 = _reads_by_source(lv)
    cw.start()
    t0_wall = time.time()
    t0 = time.monotonic()
    lv.set_batch(True)
    lv.enqueue_drains()
    stop = threading.Event()
    high_ids: list[int] = []
    errors: list[Any] = []

    def submit_high() -> None:
        i = 0
        while not stop.wait(1.0):
            code, body = lv.http("POST", "/messages", {
                "to": ["vip@example.com"], "from": "bench@example.com", "subject": f"Interactive {i}",
                "body_text": "Sent while the bulk backlog drains.", "priority": "high"})
            if code == 202:
                high_ids.append(int(body["id"]))
            else:
                errors.append((code, body))
            i += 1

    th = threading.Thread(target=submit_high, daemon=True)
    th.start()
    deadline = t0 + window
    while time.monotonic() < deadline:
        if lv.sink()[0] >= n + len(high_ids) and time.monotonic() - t0 > 5:
            break
        time.sleep(0.2)
    stop.set()
    th.join(10)
    elapsed = time.monotonic() - t0
    cpu = cw.stop()
    time.sleep(3)  # the last high-priority message: sent, recorded
    lv.stop_workers()
    time.sleep(1.5)  # let the backends flush their counters
    rows1 = _rows_read(lv)
    src1 = _reads_by_source(lv)
    bulk_sent = int(lv.psql(f"SELECT count(*) FROM message WHERE status = 'sent' AND priority = 2 "
                            f"AND sent_at >= to_timestamp({t0_wall})"))
    all_sent = int(lv.psql(f"SELECT count(*) FROM message WHERE status = 'sent' "
                           f"AND sent_at >= to_timestamp({t0_wall})"))
    lat = [float(x) for x in lv.psql(
        "SELECT extract(epoch FROM sent_at - created_at) FROM message WHERE priority = 0 AND status = 'sent'"
    ).splitlines() if x]
    unsent_high = int(lv.psql("SELECT count(*) FROM message WHERE priority = 0 AND status <> 'sent'"))
    # Fairness: the bulk each key got sent in the window, and when the last key's first message went out.
    by_key = dict(line.split("|") for line in lv.psql(
        f"SELECT api_key_id, count(*) FROM message WHERE status = 'sent' AND priority = 2 "
        f"AND sent_at >= to_timestamp({t0_wall}) GROUP BY api_key_id").splitlines() if line)
    last_first = lv.psql(f"SELECT extract(epoch FROM min(sent_at)) - {t0_wall} FROM message WHERE priority = 2 "
                         f"AND status = 'sent' AND api_key_id = {key_ids[len(submitters) - 1]}")
    r["delivery"] = {
        "window_s": round(elapsed, 1), "bulk_sent": bulk_sent, "msgs_per_s": round(bulk_sent / elapsed),
        "drained": bulk_sent >= n, "rows_read": rows1 - rows0,
        "rows_read_per_message": round((rows1 - rows0) / max(1, all_sent), 2),
        "rows_read_by_source": {k: src1[k] - src0.get(k, 0) for k in src1 if src1[k] - src0.get(k, 0)},
        "cpu_cores": cpu, "cpu_top_others": cw.top_others,
        "bulk_sent_by_key": [int(by_key.get(str(k), 0)) for k in key_ids[:len(submitters)]],
        "last_key_first_sent_s": round(float(last_first), 2) if last_first else None,
    }
    r["high"] = {"submitted": len(high_ids), "sent": len(lat), "unsent": unsent_high, "errors": errors[:3],
                 "p50_s": round(_pct(lat, 0.5), 3), "p99_s": round(_pct(lat, 0.99), 3),
                 "max_s": round(max(lat), 3) if lat else None}
    log(f"scale {n}: delivery {r['delivery']}, high {r['high']}")
    return r


def table(results: list[dict[str, Any]]) -> str:
    head = ("| backlog | high-priority submit->sent p50 / p99 (max) | delivery msgs/s (window) | rows read per "
            "delivered msg | GET /status p50 | GET /metrics p50 | first page ?status=queued&limit=50 p50 | next "
            "page by cursor p50 | bulk submit msgs/s at that size | bulk sent per key in the window (the last key's "
            "first after) | other processes' CPU (cores) |")
    lines = [head, "|" + "---|" * 11]
    for r in results:
        d, h = r["delivery"], r["high"]
        lines.append(
            f"| {r['backlog']:,} | {h['p50_s'] * 1000:.0f} ms / {h['p99_s'] * 1000:.0f} ms "
            f"({(h['max_s'] or 0) * 1000:.0f} ms), {h['sent']}/{h['submitted']} | {d['msgs_per_s']:,} "
            f"({d['window_s']} s"
            f"{', drained' if d['drained'] else ''}) | {d['rows_read_per_message']} | {r['status']['p50_ms']} ms | "
            f"{r['metrics']['p50_ms']} ms | {r['first_page']['p50_ms']} ms | {r['next_page']['p50_ms']} ms | "
            f"{r['bulk_submit']['msgs_per_s']:,} | {' / '.join(f'{x:,}' for x in d.get('bulk_sent_by_key', []))} "
            f"({d.get('last_key_first_sent_s')} s) | {d['cpu_cores'].get('others', 0):.2f} |")
    if len(results) > 1:
        a, b = results[0], results[-1]
        lines.append("")
        lines.append(f"Ratios {b['backlog']:,} / {a['backlog']:,}: delivery "
                     f"{b['delivery']['msgs_per_s'] / max(1, a['delivery']['msgs_per_s']):.2f}, bulk submit "
                     f"{b['bulk_submit']['msgs_per_s'] / max(1, a['bulk_submit']['msgs_per_s']):.2f}, /status "
                     f"{b['status']['p50_ms'] / max(0.1, a['status']['p50_ms']):.2f}, first page "
                     f"{b['first_page']['p50_ms'] / max(0.1, a['first_page']['p50_ms']):.2f}")
    return "\n".join(lines)


def main(sizes: list[int], window: float, procs: Any, logdir: Path, a: Any, src: Path, out: Path) -> int:
    results: list[dict[str, Any]] = []
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for n in sizes:
        lv = Live(procs, logdir, a, src)
        log(f"scale {n}: database {lv.db}")
        try:
            lv.up()
            results.append(one_size(lv, max(n, MEASURED_BULK), window, max(1, int(a.scale_keys))))
        finally:
            lv.down()
        out.write_text(json.dumps({"started": started, "window_s": window, "results": results}, indent=2,
                                  default=str))
    print("\n## Outbox scale benchmark (1 worker, PostgreSQL)\n")
    print(table(results))
    print(f"\nResults: {out}")
    ok = all(r["high"]["unsent"] == 0 and not r["high"]["errors"] for r in results)
    return 0 if ok else 1


__all__ = ["RESULTS", "main", "table"]
