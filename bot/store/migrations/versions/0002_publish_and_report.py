"""publish and report: repo config snapshot, commit and PR, reporting progress, work lease

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("config", sa.JSON()),
    ("base_tree", sa.String(length=64)),
    ("commit_sha", sa.String(length=64)),
    ("pr_url", sa.String(length=500)),
    ("publish_state", sa.String(length=16)),
    ("last_reported_at", sa.DateTime(timezone=True)),
    ("last_reported_seq", sa.Integer()),
    ("lease_owner", sa.String(length=64)),
    ("lease_until", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name, type_ in _COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name, _ in reversed(_COLUMNS):
            batch.drop_column(name)
