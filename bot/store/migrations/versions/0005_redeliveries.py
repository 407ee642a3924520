"""redeliveries: failed webhook deliveries asked for again, and the leases of singleton loops

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "loop_leases",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_loop_leases")),
    )
    op.create_table(
        "redeliveries",
        sa.Column("guid", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("hook_delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gave_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("guid", name=op.f("pk_redeliveries")),
    )
    op.create_index("ix_redeliveries_asked_at", "redeliveries", ["asked_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_redeliveries_asked_at", table_name="redeliveries")
    op.drop_table("redeliveries")
    op.drop_table("loop_leases")
