"""What an administrator sees on /console/status during a larger run: N messages (default 2,000) submitted in
bulk to the API, sent by two worker processes to a local SMTP sink with a per-minute limit, a share of the
recipients refused for good (550) and a share refused once (451, retried). Headless Chromium screenshots the
status page every `--every` seconds until everything is finished (bounded by `--timeout`), and the page's
summary numbers are printed as a table.

    .venv/bin/python bench/console_run.py [--messages 2000] [--limit 1200] [--every 20] [--timeout 420]

PostgreSQL: a fresh database on $TEST_PG (default postgresql://postgres@127.0.0.1:5432), dropped at the end;
Redis: $TEST_REDIS (flushed). Screenshots: test-artifacts/console-run-*.png. Loopback only; every process is
ours and stopped by its PID.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.faults.harness import Live, workdir
from tests.support.browser import ARTIFACTS, context, offline_browser, public_base

PG = os.environ.get("TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def psql(sql: str) -> None:
    subprocess.run(["psql", f"{PG}/postgres", "-q", "-c", sql], check=True, capture_output=True, timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--limit", type=int, default=1200, help="SMTP messages per minute")
    ap.add_argument("--every", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=420.0)
    args = ap.parse_args()
    import redis

    redis_url = os.environ.get("TEST_REDIS", "redis://127.0.0.1:6379/6")
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    r.close()
    db = f"outbox_console_{uuid.uuid4().hex[:8]}"
    psql(f"CREATE DATABASE {db}")
    rows: list[tuple[float, str, str, str, str, str]] = []
    try:
        with workdir() as d:
            live = Live(d, f"{PG}/{db}", redis_url)
            try:
                live.setup(workers=2, smtp_extra={"per_minute_limit": args.limit})
                handler = live.smtp.handler
                for i in range(0, args.messages, 50):  # 2 % refused for good
                    handler.rcpt_replies[f"r{i}@example.com"] = "550 5.1.1 mailbox unavailable"
                for i in range(25, args.messages, 100):  # 1 % refused once
                    handler.rcpt_once[f"r{i}@example.com"] = "451 4.2.1 try again later"
                t0 = time.monotonic()
                live.submit(args.messages, subject="console run")
                print(f"submitted {args.messages} in {time.monotonic() - t0:.1f} s", flush=True)
                with offline_browser() as (browser, offline):
                    page = context(browser, offline, 1280, 800).new_page()
                    page.goto(public_base(live.base) + "/console/sign-in")
                    page.get_by_label("API key").fill(live.key)
                    page.get_by_role("button", name="Sign in").click()
                    page.wait_for_selector("svg.chart")
                    n = 0
                    while True:
                        page.goto(public_base(live.base) + "/console/status?hours=1")
                        text = page.locator("#live").inner_text()
                        elapsed = time.monotonic() - t0
                        page.screenshot(path=str(ARTIFACTS / f"console-run-{n:02d}.png"), full_page=True)

                        def card(title: str, t: str = text) -> str:
                            m = re.search(title + r"\n+(.+)", t)
                            return m.group(1).strip() if m else "?"

                        throttle = re.search(r"\nsmtp\t([^\n]+)", text)
                        rows.append((elapsed, card("Waiting"), card("Oldest waiting"), card("Workers alive"),
                                     card("Last 2 minutes"), throttle.group(1) if throttle else "?"))
                        print(f"{elapsed:6.0f} s  waiting {rows[-1][1]:>5}  oldest {rows[-1][2]:>8}  workers "
                              f"{rows[-1][3]}  last 2 min sent {rows[-1][4]:>5}  smtp throttle [{rows[-1][5]}]",
                              flush=True)
                        n += 1
                        if card("Waiting") == "0" and elapsed > 10:
                            break
                        if elapsed > args.timeout:
                            print("timeout", flush=True)
                            break
                        time.sleep(args.every)
                    print("final counts:", live.statuses(), flush=True)
                    print("received by the sink:", len(live.smtp.received), flush=True)
                    assert offline.blocked == [], offline.blocked
            finally:
                live.stop()
    finally:
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
