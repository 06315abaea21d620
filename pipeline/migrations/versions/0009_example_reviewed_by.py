"""example reviewed by

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 04:00:00
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("example", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reviewed_by", sa.String(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("reviewed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("example", schema=None) as batch_op:
        batch_op.drop_column("reviewed_at")
        batch_op.drop_column("reviewed_by")
