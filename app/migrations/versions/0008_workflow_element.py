"""notification_rule.element, workflow_event.element: notifications set on a workflow approval element

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notification_rule", schema=None) as batch_op:
        batch_op.add_column(sa.Column("element", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
    with op.batch_alter_table("workflow_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("element", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workflow_event", schema=None) as batch_op:
        batch_op.drop_column("element")
    with op.batch_alter_table("notification_rule", schema=None) as batch_op:
        batch_op.drop_column("element")
