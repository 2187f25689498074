"""message.resent_from: resend and correct-and-resend link the new message to the finished original

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("resent_from", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True))
        batch_op.create_index(batch_op.f("ix_message_resent_from"), ["resent_from"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_message_resent_from_message"), "message", ["resent_from"],
                                    ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_message_resent_from_message"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_message_resent_from"))
        batch_op.drop_column("resent_from")
