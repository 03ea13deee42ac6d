"""Add a label to the items."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("item", sa.Column("label", sa.String(50)))


def downgrade() -> None:
    op.drop_column("item", "label")
