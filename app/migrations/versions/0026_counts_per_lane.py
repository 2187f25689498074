"""Status counters per priority lane: /status and /metrics read the waiting messages of each lane from
message_count instead of counting each lane's index range (~130 ms at 1,000,000 waiting; issue 17's target is
50 ms)

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-01

message_count gains `priority` (in its primary key); the triggers of 0021 are replaced by the same triggers
grouping by (status, kind, priority), and the counters are refilled from `message`.

TRAP (as in 0021): SQLite's batch mode ("move and copy") drops the triggers of `message`. A later migration that
rebuilds `message` on SQLite must call this module's `create_count_triggers` again (it refills the counters).
"""
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | Sequence[str] | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "status, kind, priority"

# PostgreSQL: statement-level triggers with transition tables (one aggregate and one upsert per statement,
# whatever the number of rows), each backend in its own shard (no two transactions write one counter row),
# counters upserted in sorted order.
PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION outbox_message_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO message_count AS c ({KEY}, shard, n)
      SELECT {KEY}, pg_backend_pid(), count(*) FROM new_rows GROUP BY {KEY} ORDER BY {KEY}
      ON CONFLICT ({KEY}, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
  ELSIF TG_OP = 'TRUNCATE' THEN
    DELETE FROM message_count;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO message_count AS c ({KEY}, shard, n)
      SELECT {KEY}, pg_backend_pid(), -count(*) FROM old_rows GROUP BY {KEY} ORDER BY {KEY}
      ON CONFLICT ({KEY}, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
  ELSE
    INSERT INTO message_count AS c ({KEY}, shard, n)
      SELECT {KEY}, pg_backend_pid(), sum(d) FROM (
        SELECT {KEY}, 1 AS d FROM new_rows UNION ALL SELECT {KEY}, -1 AS d FROM old_rows) x
      GROUP BY {KEY} HAVING sum(d) <> 0 ORDER BY {KEY}
      ON CONFLICT ({KEY}, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
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
    return (f"INSERT INTO message_count ({KEY}, shard, n) VALUES ({row}.status, {row}.kind, {row}.priority, 0, "
            f"{delta}) ON CONFLICT ({KEY}, shard) DO UPDATE SET n = n + ({delta});")


SQLITE_TRIGGERS = [
    f"CREATE TRIGGER message_count_ins AFTER INSERT ON message BEGIN {_sqlite_bump('NEW', 1)} END",
    "CREATE TRIGGER message_count_upd AFTER UPDATE OF status, kind, priority ON message "
    "WHEN OLD.status <> NEW.status OR OLD.kind <> NEW.kind OR OLD.priority <> NEW.priority BEGIN "
    f"{_sqlite_bump('OLD', -1)} {_sqlite_bump('NEW', 1)} END",
    f"CREATE TRIGGER message_count_del AFTER DELETE ON message BEGIN {_sqlite_bump('OLD', -1)} END",
]
TRIGGERS = ("message_count_ins", "message_count_upd", "message_count_del", "message_count_trunc")


def _drop_triggers() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON message" if postgres else f"DROP TRIGGER IF EXISTS {name}")


def create_count_triggers() -> None:
    """(Re)create the counting triggers and refill message_count from the table."""
    _drop_triggers()
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        for ddl in PG_TRIGGERS:
            op.execute(ddl)
    else:
        for ddl in SQLITE_TRIGGERS:
            op.execute(ddl)
    op.execute("DELETE FROM message_count")
    op.execute(f"INSERT INTO message_count ({KEY}, shard, n) SELECT {KEY}, 0, count(*) FROM message GROUP BY {KEY}")


def _create_table(with_priority: bool) -> None:
    cols: list[sa.Column[Any]] = [sa.Column("status", sa.String(length=16), nullable=False),
                                  sa.Column("kind", sa.String(length=16), nullable=False)]
    if with_priority:
        cols.append(sa.Column("priority", sa.SmallInteger(), nullable=False))
    cols += [sa.Column("shard", sa.BigInteger(), nullable=False), sa.Column("n", sa.BigInteger(), nullable=False)]
    key = ["status", "kind", "priority", "shard"] if with_priority else ["status", "kind", "shard"]
    op.create_table("message_count", *cols, sa.PrimaryKeyConstraint(*key))


def upgrade() -> None:
    # The counters are derived data: a new table refilled from `message` (no copy of the old one to convert).
    _drop_triggers()
    op.drop_table("message_count")
    _create_table(with_priority=True)
    create_count_triggers()


def downgrade() -> None:
    import importlib

    _drop_triggers()
    op.drop_table("message_count")
    _create_table(with_priority=False)
    importlib.import_module("app.migrations.versions.0021_lanes_schedule_counts").create_count_triggers()
