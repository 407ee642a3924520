"""variant groups: N runs of one request, one status comment, and the pick of one of them

A group (`run_groups`) holds what its variants share: the request's delivery, the status
comment with their table, and which variant a writer picked, by whom, and how far the pick
got. A variant is a run with `group_id` and `variant` (1..N). The one-active-run-per-issue
index leaves variants out: the ledger keeps a group and a single run from overlapping.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

OLD_ACTIVE = "state IN ('awaiting_approval', 'queued', 'starting', 'running')"
NEW_ACTIVE = OLD_ACTIVE + " AND group_id IS NULL"


def _active_index(where: str) -> None:
    op.drop_index("uq_runs_active_per_issue", table_name="runs")
    op.create_index("uq_runs_active_per_issue", "runs", ["repo_id", "number"], unique=True,
                    sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def upgrade() -> None:
    op.create_table(
        "run_groups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("repo_id", sa.BigInteger(), nullable=False),
        sa.Column("repo_full_name", sa.String(length=200), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("delivery_id", sa.String(length=64), nullable=False),
        sa.Column("sender_login", sa.String(length=100), nullable=False),
        sa.Column("retry_of", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_comment_id", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reported_version", sa.Integer(), nullable=False),
        sa.Column("picked_variant", sa.Integer(), nullable=True),
        sa.Column("picked_by", sa.String(length=100), nullable=True),
        sa.Column("picked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pick_state", sa.String(length=16), nullable=True),
        sa.Column("pick_error", sa.Text(), nullable=True),
        sa.Column("pick_delivery_id", sa.String(length=64), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["retry_of"], ["run_groups.id"],
                                name=op.f("fk_run_groups_retry_of_run_groups")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_groups")),
        sa.UniqueConstraint("delivery_id", name=op.f("uq_run_groups_delivery_id")),
    )
    op.create_index("ix_run_groups_repo_number", "run_groups", ["repo_id", "number"])
    # Plain ADD COLUMNs (no foreign key): on SQLite a constraint would rebuild `runs`, whose
    # DROP cascades to every run's transitions, events and usage (see 0007).
    op.add_column("runs", sa.Column("group_id", sa.BigInteger(), nullable=True))
    op.add_column("runs", sa.Column("variant", sa.Integer(), nullable=True))
    op.create_index("ix_runs_group_id", "runs", ["group_id"])
    _active_index(NEW_ACTIVE)


def downgrade() -> None:
    # The older code knows no groups: their variants that are still active end cancelled, so
    # that the one-active-run index can hold again.
    runs = sa.table("runs", sa.column("state", sa.String()), sa.column("group_id", sa.BigInteger()))
    op.execute(runs.update().where(runs.c.group_id.is_not(None),
                                   runs.c.state.in_(["awaiting_approval", "queued", "starting",
                                                     "running"]))
               .values(state="cancelled"))
    _active_index(OLD_ACTIVE)
    op.drop_index("ix_runs_group_id", table_name="runs")
    op.drop_column("runs", "variant")
    op.drop_column("runs", "group_id")
    op.drop_index("ix_run_groups_repo_number", table_name="run_groups")
    op.drop_table("run_groups")
