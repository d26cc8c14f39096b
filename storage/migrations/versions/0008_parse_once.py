"""parse once: a message's parsed facts and duplicate signature, the duplicate index, groups by head

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("facts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("signature", sa.JSON(), nullable=True))
    op.create_table(
        "duplicate_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("head_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("category", sa.String(length=30), nullable=False),
        sa.Column("ward", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["head_id"], ["queue_items.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_duplicate_keys_place", "duplicate_keys", ["category", "ward", "created_at"])
    op.create_index("ix_duplicate_keys_head", "duplicate_keys", ["head_id"])
    op.create_index("ix_duplicate_keys_message", "duplicate_keys", ["message_id"])
    # A group's reports are read by the item they joined: without an index that reads the whole queue.
    op.create_index("ix_queue_items_merged_into", "queue_items", ["merged_into_id"])


def downgrade() -> None:
    op.drop_index("ix_queue_items_merged_into", table_name="queue_items")
    op.drop_index("ix_duplicate_keys_message", table_name="duplicate_keys")
    op.drop_index("ix_duplicate_keys_head", table_name="duplicate_keys")
    op.drop_index("ix_duplicate_keys_place", table_name="duplicate_keys")
    op.drop_table("duplicate_keys")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("signature")
        batch.drop_column("facts")
