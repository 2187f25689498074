"""email_parameters.interactive_providers: which providers the "How would you like to send email" dialog offers

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("email_parameters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("interactive_providers", sa.JSON(), nullable=False,
                                      server_default=sa.text("'[\"email_app\", \"exchange\", \"smtp\", \"graph\"]'")))


def downgrade() -> None:
    with op.batch_alter_table("email_parameters", schema=None) as batch_op:
        batch_op.drop_column("interactive_providers")
