"""approvals: runs wait for a writer's approval, bound to a hash of their inputs

A run asked for by someone without write access starts in `awaiting_approval` (17 characters,
so PostgreSQL's state columns widen), which counts as active for the one-run-per-issue index.
The run keeps who wrote its inputs, their hash as the request was made, and who approved it.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

OLD_ACTIVE = "state IN ('queued', 'starting', 'running')"
NEW_ACTIVE = "state IN ('awaiting_approval', 'queued', 'starting', 'running')"
STATE_COLUMNS = (("runs", "state", False), ("runs", "last_reported_state", True),
                 ("run_transitions", "from_state", True), ("run_transitions", "to_state", False))


def _postgresql() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def _widen(length: int) -> None:
    # Only PostgreSQL: SQLite keeps any length in a VARCHAR (the tables declare its columns
    # at 16 still), and changing a type there rebuilds `runs`, whose DROP would cascade to
    # every run's transitions, events and usage.
    if _postgresql():
        for table, column, nullable in STATE_COLUMNS:
            op.alter_column(table, column, type_=sa.String(length=length), nullable=nullable)


def _active_index(where: str) -> None:
    op.drop_index("uq_runs_active_per_issue", table_name="runs")
    op.create_index("uq_runs_active_per_issue", "runs", ["repo_id", "number"], unique=True,
                    sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def upgrade() -> None:
    _widen(32)
    # Adding columns is an ALTER TABLE on SQLite too: no copy of the table.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("provenance", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("inputs_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("approved_by", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
    _active_index(NEW_ACTIVE)


def downgrade() -> None:
    # Runs in the new states have no meaning to the older code: end them as cancelled.
    new_states = ["awaiting_approval", "denied", "expired"]
    for name, column, _nullable in STATE_COLUMNS:
        table = sa.table(name, sa.column(column, sa.String()))
        op.execute(table.update().where(table.c[column].in_(new_states))
                   .values({column: "cancelled"}))
    _active_index(OLD_ACTIVE)
    for column in ("approved_at", "approved_by", "inputs_sha256", "provenance"):
        # SQLite (3.35 and later) drops a column in place, with no copy of the table.
        op.drop_column("runs", column)
    _widen(16)
