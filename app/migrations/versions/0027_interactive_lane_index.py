"""ix_message_interactive_lane: the claim and the reconciler with the email distributor batch off (issue 17)

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-01

With batch processing off only interactive mail goes out. The lanes' and keys' ranges then hold the whole bulk
backlog, and the interactive filter walked them (one walk of 1,000,000 index entries, ~155 ms, each time a
worker looked for due mail). This index holds the waiting interactive messages alone, as ix_message_key_lane
does for all (priority, submitting key, next_attempt_at). An index only: `message` is not rebuilt.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | Sequence[str] | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "status IN ('queued', 'deferred', 'retrying') AND kind = 'interactive'"


def upgrade() -> None:
    op.create_index("ix_message_interactive_lane", "message",
                    ["priority", sa.text("coalesce(api_key_id, 0)"), "next_attempt_at"],
                    postgresql_where=sa.text(WHERE), sqlite_where=sa.text(WHERE))


def downgrade() -> None:
    op.drop_index("ix_message_interactive_lane", table_name="message")
