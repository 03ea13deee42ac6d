"""Second head (branch beta): a table of its own."""

import sqlalchemy as sa
from alembic import op

revision = "0002b"
down_revision = "0001"
branch_labels = ("beta",)
depends_on = None


def upgrade() -> None:
    op.create_table("beta", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("beta")
