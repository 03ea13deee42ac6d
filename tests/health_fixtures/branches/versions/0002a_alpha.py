"""First head (branch alpha): a table of its own."""

import sqlalchemy as sa
from alembic import op

revision = "0002a"
down_revision = "0001"
branch_labels = ("alpha",)
depends_on = None


def upgrade() -> None:
    op.create_table("alpha", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("alpha")
