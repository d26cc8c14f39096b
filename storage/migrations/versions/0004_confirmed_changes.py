"""confirmations for every change an unverified sender asks; bounce scores that decay

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
    with op.batch_alter_table("confirmations") as batch:
        batch.add_column(sa.Column("action", sa.String(length=20), nullable=False, server_default="subscribe"))
        batch.add_column(sa.Column("payload", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("last_bounce_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_column("last_bounce_at")
    with op.batch_alter_table("confirmations") as batch:
        batch.drop_column("payload")
        batch.drop_column("action")
