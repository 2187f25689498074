"""The delivery job: its name and every job id, in one place; and the high lane's wake-up.

A drain job ("messages.deliver") is an idempotent wake-up: "there is due work". It claims due messages in
batches until none are left, so one job per message is never needed; job ids only decide which wake-ups
arq may coalesce. The API asks for wake-ups after its transaction commits (`wake_for`, `wake`); the worker
and the reconciler enqueue them directly (`enqueue`).

High-priority messages are not left to a drain job: arq runs at most OUTBOX_WORKER_MAX_JOBS jobs at once, in
the order they were enqueued, and a bulk drain holds its slot for up to 20 s. Each worker runs a high-lane
loop of its own instead (`worker.dispatch.high_lane`), blocked on the Redis list `high_wake_key`, which the
API pushes after committing a high-priority message (and which the loop also polls every second).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from arq.connections import ArqRedis

from app.core.deps import Tx
from app.settings import get_settings

DELIVER = "messages.deliver"

# Why a wake-up is asked for; part of the job id, so each reason coalesces only with itself.
Reason = Literal["released", "params", "wake", "more", "reconcile"]


def slot_id(message_id: int) -> str:
    """A handful of drain slots: a running drain job picks up new rows, so one job per message is not needed."""
    return f"deliver:{message_id % max(1, get_settings().drain_slots)}"


HIGH_WAKE = "wake:high"


def high_wake_key(queue: str) -> str:
    """The Redis list a worker's high-lane loop blocks on (one per queue; core.jobs.JobFlusher.signal)."""
    return f"{queue}:{HIGH_WAKE}"


def wake_for(tx: Tx, message_ids: Iterable[int], *, high: bool = False) -> None:
    """After the request commits, wake the workers for these new or re-queued messages; `high`: some are in the
    high lane (wake the high-lane loops too)."""
    for job_id in sorted({slot_id(i) for i in message_ids}):
        tx.enqueue_after_commit(DELIVER, _job_id=job_id)
    if high:
        tx.signal_after_commit(HIGH_WAKE)


def wake(tx: Tx, reason: Literal["released", "params"]) -> None:
    """After the request commits, wake the workers: held messages were released, or batch sending changed."""
    tx.enqueue_after_commit(DELIVER, _job_id=f"deliver:{reason}")


async def enqueue(redis: ArqRedis, queue: str, reason: Reason, *parts: object, defer_by: float | None = None) -> None:
    """From the worker or the reconciler: a drain now (or after `defer_by` seconds). `parts` make the id unique
    where it must be: a job id still held by a killed job would otherwise block the drain (TRAPS.md)."""
    job_id = ":".join(["deliver", reason, *(str(p) for p in parts)])
    await redis.enqueue_job(DELIVER, _job_id=job_id, _defer_by=defer_by, _queue_name=queue)
