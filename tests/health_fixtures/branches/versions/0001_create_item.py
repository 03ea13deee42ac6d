"""Create the item table."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("item", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("item")
