"""replays: the SHA-256 of each delivery's signed body, unique

The delivery id is not covered by the signature: the same signed body posted again under a new
id is a replay, and this column makes it one delivery.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("payload_sha256", sa.LargeBinary(length=32), nullable=True))
        batch.create_index("uq_deliveries_payload_sha256", ["payload_sha256"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("uq_deliveries_payload_sha256")
        batch.drop_column("payload_sha256")
