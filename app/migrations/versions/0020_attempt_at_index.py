"""delivery_attempt.at indexed: the console's chart reads attempts per minute over the last hours

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_attempt") as batch:
        batch.create_index(batch.f("ix_delivery_attempt_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery_attempt") as batch:
        batch.drop_index(batch.f("ix_delivery_attempt_at"))
