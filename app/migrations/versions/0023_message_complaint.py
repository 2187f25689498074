"""message_complaint: feedback-loop complaints (ARF reports) per recipient of a sent message (issue 16)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01

A table of its own rather than a kind of bounce: a complaint is not a delivery failure (the recipient got the
message) and carries other facts (feedback type, reporter, source IP). Creating it rebuilds nothing.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_complaint",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("recipient", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("feedback_type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("user_agent", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("source_ip", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("arrived_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("matched_by", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("recipient_by", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", "recipient", "feedback_type", name="uq_message_complaint"),
    )
    op.create_index("ix_message_complaint_message_id", "message_complaint", ["message_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_message_complaint_message_id", table_name="message_complaint")
    op.drop_table("message_complaint")
