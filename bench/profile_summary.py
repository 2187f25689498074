"""Summarise a py-spy collapsed-stack file (`py-spy record --format raw`): where the samples go.

Run: python bench/profile_summary.py FILE.collapsed [--top 25]
Prints: total samples; inclusive share by bucket (library/area, a sample counts once per bucket); the top
functions by inclusive share (a sample counts once per function) and by self share (the leaf frame).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")

# (bucket, test on "func (file)") in priority order for the self-time bucket; inclusive counts all matches.
BUCKETS: list[tuple[str, str]] = [
    ("MIME build (app.mail.build + email.*)", r"app/mail/build\.py|/email/"),
    ("aiosmtplib (SMTP client)", r"aiosmtplib/"),
    ("SQLAlchemy (core/ORM/engine)", r"sqlalchemy/"),
    ("asyncpg (driver)", r"asyncpg/"),
    ("arq (job bookkeeping)", r"arq/"),
    ("redis-py", r"/redis/"),
    ("pydantic (validation/serialisation)", r"pydantic"),
    ("FastAPI/Starlette", r"fastapi/|starlette/"),
    ("uvicorn/httptools", r"uvicorn/|httptools"),
    ("logging/structlog", r"/logging/|structlog/"),
    ("json", r"/json/"),
    ("app.messages (submit/lifecycle)", r"app/messages/"),
    ("app.mail.validate / email_validator", r"app/mail/validate|email_validator/|idna/"),
    ("app.core (deps, security, middleware)", r"app/core/"),
    ("worker/dispatch.py", r"worker/dispatch\.py"),
    ("asyncio event loop", r"/asyncio/|uvloop"),
]


def parse(path: str) -> list[tuple[list[str], int]]:
    out = []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, n = line.rpartition(" ")
            try:
                count = int(n)
            except ValueError:
                continue
            out.append((stack.split(";"), count))
    return out


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    f = m.group("file")
    for marker in ("site-packages/", "python3.11/", "/work/main/", "/outbox-bench-src-"):
        if marker in f:
            f = f.split(marker, 1)[1]
            break
    if f.startswith("tmp") or f.startswith("/tmp/"):
        f = f.split("/", 2)[-1]
    return f"{m.group('func')} ({f})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    stacks = parse(a.file)
    total = sum(c for _, c in stacks)
    incl: Counter[str] = Counter()
    selfc: Counter[str] = Counter()
    bucket_incl: Counter[str] = Counter()
    bucket_self: Counter[str] = Counter()
    for frames, c in stacks:
        names = [short(f) for f in frames]
        for n in set(names):
            incl[n] += c
        selfc[names[-1]] += c
        hit = set()
        for b, rx in BUCKETS:
            if any(re.search(rx, f) for f in frames):
                hit.add(b)
        for b in hit:
            bucket_incl[b] += c
        leaf = frames[-1]
        for b, rx in BUCKETS:
            if re.search(rx, leaf):
                bucket_self[b] += c
                break
        else:
            bucket_self["other (leaf elsewhere)"] += c
    pc = lambda v: f"{100 * v / total:5.1f}%"  # noqa: E731
    print(f"{a.file}: {total} samples")
    print("\n-- buckets: inclusive (sample has any frame in it) | self (leaf frame in it)")
    for b, _ in BUCKETS + [("other (leaf elsewhere)", "")]:
        if bucket_incl[b] or bucket_self[b]:
            print(f"  {pc(bucket_incl[b])} | {pc(bucket_self[b])}  {b}")
    print(f"\n-- top {a.top} functions, inclusive")
    for n, c in incl.most_common(a.top):
        print(f"  {pc(c)}  {n}")
    print(f"\n-- top {a.top} functions, self")
    for n, c in selfc.most_common(a.top):
        print(f"  {pc(c)}  {n}")


if __name__ == "__main__":
    main()
