"""workflow_event: event ids scoped to the submitting API key, with the request's hash

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workflow_event", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.drop_constraint("uq_workflow_event_event_id", type_="unique")
        batch_op.create_unique_constraint("uq_workflow_event_key_event_id", ["api_key_id", "event_id"])


def downgrade() -> None:
    with op.batch_alter_table("workflow_event", schema=None) as batch_op:
        batch_op.drop_constraint("uq_workflow_event_key_event_id", type_="unique")
        batch_op.create_unique_constraint("uq_workflow_event_event_id", ["event_id"])
        batch_op.drop_column("request_hash")
