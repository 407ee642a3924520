"""run sessions: the agent session each run handed back, for the next run to resume

One row a run: the agent, its session id, the archive's size and digest, and the archive
itself (or nothing, when AGENTBOT_SESSION_DIR holds it as a file). Retention empties `data`
and sets `expired_at`, keeping the row so that a later run can say why it started fresh.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_sessions",
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("agent", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=128), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE",
                                name=op.f("fk_run_sessions_run_id_runs")),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_sessions")),
    )


def downgrade() -> None:
    op.drop_table("run_sessions")
