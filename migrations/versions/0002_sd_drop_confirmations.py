"""sd drop confirmations: an operator's confirmation of a withheld mass target drop

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sd_drop_confirmations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('confirmed_by', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sd_drop_confirmations'))
    )
    with op.batch_alter_table('sd_drop_confirmations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sd_drop_confirmations_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sd_drop_confirmations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sd_drop_confirmations_expires_at'))

    op.drop_table('sd_drop_confirmations')
