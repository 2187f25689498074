"""email_parameters: create the single row with its defaults (no insert race on the submit path)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.text(
        "INSERT INTO email_parameters (id, batch_provider, attachment_size_limit_mb, email_expiration_days, "
        "history_retention_days, batch_processing_enabled, distributor_interval_seconds, updated_at) "
        "SELECT 1, 'smtp', 25, 0, 0, true, 60, CURRENT_TIMESTAMP "
        "WHERE NOT EXISTS (SELECT 1 FROM email_parameters WHERE id = 1)"))


def downgrade() -> None:
    pass
