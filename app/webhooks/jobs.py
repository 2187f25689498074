"""The webhook delivery job: its name and job ids, in one place (as `app.messages.jobs` for messages).

"webhooks.deliver" is an idempotent wake-up: it claims due deliveries in batches until none are left. The
worker wakes it after committing events; the reconciler enqueues it whenever deliveries are due (Redis may
have lost the job); bounce processing wakes it after committing a bounce.
"""

from __future__ import annotations

from arq.connections import ArqRedis

DELIVER = "webhooks.deliver"


async def enqueue(redis: ArqRedis, queue: str, reason: str, *parts: object, defer_by: float | None = None) -> None:
    """A drain now (or after `defer_by` s). `parts` make the id unique where a killed job's id could linger."""
    job_id = ":".join(["webhooks", reason, *(str(p) for p in parts)])
    await redis.enqueue_job(DELIVER, _job_id=job_id, _defer_by=defer_by, _queue_name=queue)
