"""ix_message_key_lane: fairness between submitting keys within a lane (issue 17)

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01

(priority, coalesce(api_key_id, 0), next_attempt_at) over the waiting statuses only, as ix_message_lane: the
claim finds the keys with due messages in a lane with one index probe per key (a loose index scan) and reads
each key's share as one range. Messages without a key are key 0: `api_key_id IS NULL` would be a range the
planner cannot read in next_attempt_at order. An index only: `message` is not rebuilt (its count triggers stay
as they are).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | Sequence[str] | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = "status IN ('queued', 'deferred', 'retrying')"
SUBMITTER = "coalesce(api_key_id, 0)"


def upgrade() -> None:
    op.create_index("ix_message_key_lane", "message", ["priority", sa.text(SUBMITTER), "next_attempt_at"],
                    postgresql_where=sa.text(WAITING), sqlite_where=sa.text(WAITING))


def downgrade() -> None:
    op.drop_index("ix_message_key_lane", table_name="message")
