"""ix_message_expiry: the expiry sweep reads only unsent messages past their time (issue 17)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01

The reconciler's sweep (once per distributor interval) read the whole table: 10,007 rows for a 10,000 backlog
every minute, a million at a million.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSENT = "status IN ('draft', 'queued', 'deferred', 'retrying', 'held')"


def upgrade() -> None:
    op.create_index("ix_message_expiry", "message", ["expires_at"],
                    postgresql_where=sa.text(UNSENT), sqlite_where=sa.text(UNSENT))


def downgrade() -> None:
    op.drop_index("ix_message_expiry", table_name="message")
