"""corrections: coordinators overruling the rules' urgency or category (SPOED, CATEGORIE ...)

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
    op.create_table(
        "corrections",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queue_item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("field", sa.String(length=20), nullable=False),
        sa.Column("old_value", sa.String(length=30), nullable=True),
        sa.Column("new_value", sa.String(length=30), nullable=False),
        sa.Column("role", sa.String(length=30), nullable=False),
        sa.Column("wards", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["queue_item_id"], ["queue_items.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_corrections_item", "corrections", ["queue_item_id"])
    op.create_index("ix_corrections_at", "corrections", ["at"])


def downgrade() -> None:
    op.drop_index("ix_corrections_at", table_name="corrections")
    op.drop_index("ix_corrections_item", table_name="corrections")
    op.drop_table("corrections")
