"""The mailbox poller's job: its name in one place (as `app.messages.jobs` and `app.webhooks.jobs`).

"bounces.poll_mailboxes" is an arq cron job of the worker (worker/bounces.py), registered only when
OUTBOX_BOUNCE_POLL_SECONDS is above 0. It ticks more often than the period (at most every 15 s); the database row
of each mailbox says when it is due (`next_poll_at`) and which worker holds it (a lease), so one worker polls a
mailbox at a time whatever the number of workers and ticks.
"""

from __future__ import annotations

POLL = "bounces.poll_mailboxes"


def tick_seconds(period: int) -> int:
    """How often the cron job looks whether a poll is due: the period itself up to 15 s."""
    return max(1, min(period, 15))
