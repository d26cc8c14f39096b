"""who sent a message and how sure: the sender's assurance, its reasons, an unbelieved claim

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("classifications") as batch:
        batch.add_column(sa.Column("sender_assurance", sa.String(length=20), nullable=False,
                                   server_default="unauthenticated"))
        batch.add_column(sa.Column("sender_notes", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("claimed_source", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("classifications") as batch:
        batch.drop_column("claimed_source")
        batch.drop_column("sender_notes")
        batch.drop_column("sender_assurance")
