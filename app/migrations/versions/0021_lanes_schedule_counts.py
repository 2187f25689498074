"""Priority lanes, scheduled sending, status counters (issue 17)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01

- message.priority (0 high, 1 normal, 2 low; existing rows normal) and message.send_at.
- ix_message_lane: (priority, next_attempt_at) over the waiting statuses only (a partial index on both
  databases): each lane's claim reads its batch, not the backlog. Replaces ix_message_due.
- ix_message_status_id (listing by status, keyset pages), ix_message_status_finished (recent failures,
  purge; replaces ix_message_finished).
- message_count and the triggers that keep it, filled with the current counts.

TRAP: SQLite's batch mode ("move and copy": a new table, copy, drop, rename) drops the triggers of `message`.
A later migration that rebuilds `message` on SQLite must call `create_count_triggers` again (and refill): the
one of 0026, which replaced these triggers with per-lane ones.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = "status IN ('queued', 'deferred', 'retrying')"

# PostgreSQL: statement-level triggers with transition tables (one aggregate and one upsert per statement,
# whatever the number of rows), each backend in its own shard (no two transactions write one counter row),
# statuses upserted in sorted order.
PG_FUNCTION = """
CREATE OR REPLACE FUNCTION outbox_message_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO message_count AS c (status, kind, shard, n)
      SELECT status, kind, pg_backend_pid(), count(*) FROM new_rows GROUP BY status, kind ORDER BY status, kind
      ON CONFLICT (status, kind, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
  ELSIF TG_OP = 'TRUNCATE' THEN
    DELETE FROM message_count;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO message_count AS c (status, kind, shard, n)
      SELECT status, kind, pg_backend_pid(), -count(*) FROM old_rows GROUP BY status, kind ORDER BY status, kind
      ON CONFLICT (status, kind, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
  ELSE
    INSERT INTO message_count AS c (status, kind, shard, n)
      SELECT status, kind, pg_backend_pid(), sum(d) FROM (
        SELECT status, kind, 1 AS d FROM new_rows UNION ALL SELECT status, kind, -1 AS d FROM old_rows) x
      GROUP BY status, kind HAVING sum(d) <> 0 ORDER BY status, kind
      ON CONFLICT (status, kind, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
  END IF;
  RETURN NULL;
END $$;
"""
PG_TRIGGERS = [
    "CREATE TRIGGER message_count_ins AFTER INSERT ON message REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION outbox_message_count()",
    "CREATE TRIGGER message_count_upd AFTER UPDATE ON message REFERENCING OLD TABLE AS old_rows "
    "NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION outbox_message_count()",
    "CREATE TRIGGER message_count_del AFTER DELETE ON message REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION outbox_message_count()",
    "CREATE TRIGGER message_count_trunc AFTER TRUNCATE ON message FOR EACH STATEMENT "
    "EXECUTE FUNCTION outbox_message_count()",
]


def _sqlite_bump(row: str, delta: int) -> str:
    return (f"INSERT INTO message_count (status, kind, shard, n) VALUES ({row}.status, {row}.kind, 0, {delta}) "
            f"ON CONFLICT (status, kind, shard) DO UPDATE SET n = n + ({delta});")


SQLITE_TRIGGERS = [
    f"CREATE TRIGGER message_count_ins AFTER INSERT ON message BEGIN {_sqlite_bump('NEW', 1)} END",
    "CREATE TRIGGER message_count_upd AFTER UPDATE OF status, kind ON message "
    "WHEN OLD.status <> NEW.status OR OLD.kind <> NEW.kind BEGIN "
    f"{_sqlite_bump('OLD', -1)} {_sqlite_bump('NEW', 1)} END",
    f"CREATE TRIGGER message_count_del AFTER DELETE ON message BEGIN {_sqlite_bump('OLD', -1)} END",
]


def create_count_triggers() -> None:
    """(Re)create the counting triggers and refill message_count from the table."""
    bind = op.get_bind()
    for name in ("message_count_ins", "message_count_upd", "message_count_del", "message_count_trunc"):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON message" if bind.dialect.name == "postgresql"
                   else f"DROP TRIGGER IF EXISTS {name}")
    if bind.dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for ddl in PG_TRIGGERS:
            op.execute(ddl)
    else:
        for ddl in SQLITE_TRIGGERS:
            op.execute(ddl)
    op.execute("DELETE FROM message_count")
    op.execute("INSERT INTO message_count (status, kind, shard, n) SELECT status, kind, 0, count(*) FROM message "
               "GROUP BY status, kind")


def upgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("send_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.drop_index("ix_message_due", table_name="message")
    op.drop_index("ix_message_finished", table_name="message")
    op.create_index("ix_message_lane", "message", ["priority", "next_attempt_at"],
                    postgresql_where=sa.text(WAITING), sqlite_where=sa.text(WAITING))
    op.create_index("ix_message_status_id", "message", ["status", "id"])
    op.create_index("ix_message_status_finished", "message", ["status", "finished_at"])
    op.create_table(
        "message_count",
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("shard", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("status", "kind", "shard"),
    )
    create_count_triggers()


def downgrade() -> None:
    bind = op.get_bind()
    for name in ("message_count_ins", "message_count_upd", "message_count_del", "message_count_trunc"):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON message" if bind.dialect.name == "postgresql"
                   else f"DROP TRIGGER IF EXISTS {name}")
    if bind.dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS outbox_message_count()")
    op.drop_table("message_count")
    op.drop_index("ix_message_status_finished", table_name="message")
    op.drop_index("ix_message_status_id", table_name="message")
    op.drop_index("ix_message_lane", table_name="message")
    op.create_index("ix_message_finished", "message", ["finished_at"])
    op.create_index("ix_message_due", "message", ["status", "next_attempt_at"])
    with op.batch_alter_table("message") as batch:
        batch.drop_column("send_at")
        batch.drop_column("priority")
