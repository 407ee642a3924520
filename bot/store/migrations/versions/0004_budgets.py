"""budgets: the dollars of each usage row, when a run's budget ran out, usage totals

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_usage") as batch:
        batch.add_column(sa.Column("cost", sa.Float(), nullable=True))
        batch.create_index(batch.f("ix_run_usage_at"), ["at"], unique=False)
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("budget_reached_at", sa.DateTime(timezone=True),
                                   nullable=True))
        batch.add_column(sa.Column("budget_reached", sa.String(length=100), nullable=True))
        batch.create_index("ix_runs_sender_created", ["sender_id", "created_at"], unique=False)
    op.create_table(
        "usage_totals",
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("installation_id", "model", name=op.f("pk_usage_totals")),
    )


def downgrade() -> None:
    op.drop_table("usage_totals")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index("ix_runs_sender_created")
        batch.drop_column("budget_reached")
        batch.drop_column("budget_reached_at")
    with op.batch_alter_table("run_usage") as batch:
        batch.drop_index(batch.f("ix_run_usage_at"))
        batch.drop_column("cost")
