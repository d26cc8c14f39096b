"""one table for every rate limit, keyed by address digests; the unused daily_stats goes

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rate_windows",
        sa.Column("bucket", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("summary_item_id", _ID, nullable=True),
        sa.ForeignKeyConstraint(["summary_item_id"], ["queue_items.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("bucket", "key", "window_start"),
    )
    op.create_index("ix_rate_windows_start", "rate_windows", ["window_start"])
    # The per-sender hour windows held addresses; the counts only matter for the current hour.
    op.drop_table("sender_windows")
    op.drop_table("daily_stats")  # nothing ever wrote it; the report counts from kept rows


def downgrade() -> None:
    op.create_table(
        "daily_stats",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("ward", sa.String(length=60), nullable=False),
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "ward", "name"),
    )
    op.create_table(
        "sender_windows",
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("summary_item_id", _ID, nullable=True),
        sa.ForeignKeyConstraint(["summary_item_id"], ["queue_items.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("sender", "window_start"),
    )
    op.drop_index("ix_rate_windows_start", table_name="rate_windows")
    op.drop_table("rate_windows")
