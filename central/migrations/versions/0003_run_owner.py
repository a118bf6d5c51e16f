"""Runs record who started them and the Flower app (FAB) they run; each round records the sites' replies.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("started_by", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("fab", sa.JSON(), nullable=True))
    op.create_table(
        "round_replies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("server_round", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=20), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("verdict", sa.String(length=16), nullable=False),
        sa.Column("arrays_sha256", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("round_replies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_round_replies_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_round_replies_node_id"), ["node_id"], unique=False)


def downgrade() -> None:
    op.drop_table("round_replies")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("fab")
        batch_op.drop_column("started_by")
