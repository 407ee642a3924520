"""gateway: model usage per run and the audit trail of what a run did through the gateway

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "run_usage",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_read_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cache_write_tokens", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_usage_run_id_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_usage")),
    )
    with op.batch_alter_table("run_usage") as batch:
        batch.create_index(batch.f("ix_run_usage_run_id"), ["run_id"], unique=False)
    op.create_table(
        "gateway_audit",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"],
                                name=op.f("fk_gateway_audit_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_audit")),
    )
    with op.batch_alter_table("gateway_audit") as batch:
        batch.create_index(batch.f("ix_gateway_audit_run_id"), ["run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gateway_audit") as batch:
        batch.drop_index(batch.f("ix_gateway_audit_run_id"))
    op.drop_table("gateway_audit")
    with op.batch_alter_table("run_usage") as batch:
        batch.drop_index(batch.f("ix_run_usage_run_id"))
    op.drop_table("run_usage")
