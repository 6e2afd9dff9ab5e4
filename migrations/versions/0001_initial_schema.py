"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    
    op.create_table('audit_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('instance_id', sa.String(length=255), nullable=True),
    sa.Column('binding_id', sa.String(length=255), nullable=True),
    sa.Column('platform', sa.String(length=64), nullable=True),
    sa.Column('user_id', sa.String(length=255), nullable=True),
    sa.Column('request_id', sa.String(length=255), nullable=True),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_instance_id_at', ['instance_id', 'at'], unique=False)

    op.create_table('integration_attempts',
    sa.Column('aiven_service_name', sa.String(length=255), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('aiven_service_name', name=op.f('pk_integration_attempts'))
    )
    op.create_table('leases',
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('holder', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases'))
    )
    op.create_table('service_instances',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('service_id', sa.String(length=255), nullable=False),
    sa.Column('plan_id', sa.String(length=255), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('organization_guid', sa.String(length=255), nullable=False),
    sa.Column('space_guid', sa.String(length=255), nullable=False),
    sa.Column('organization_name', sa.String(length=255), nullable=True),
    sa.Column('space_name', sa.String(length=255), nullable=True),
    sa.Column('instance_name', sa.String(length=255), nullable=True),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('request_fingerprint', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_service_instances'))
    )
    with op.batch_alter_table('service_instances', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_instances_organization_guid'), ['organization_guid'], unique=False)
        batch_op.create_index(batch_op.f('ix_service_instances_space_guid'), ['space_guid'], unique=False)

    op.create_table('service_owners',
    sa.Column('service_instance_guid', sa.String(length=255), nullable=False),
    sa.Column('service_instance_name', sa.String(length=255), nullable=True),
    sa.Column('space_guid', sa.String(length=255), nullable=True),
    sa.Column('space_name', sa.String(length=255), nullable=True),
    sa.Column('organization_guid', sa.String(length=255), nullable=True),
    sa.Column('organization_name', sa.String(length=255), nullable=True),
    sa.Column('missing', sa.Boolean(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('refreshed_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('service_instance_guid', name=op.f('pk_service_owners'))
    )
    with op.batch_alter_table('service_owners', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_service_owners_organization_guid'), ['organization_guid'], unique=False)
        batch_op.create_index(batch_op.f('ix_service_owners_space_guid'), ['space_guid'], unique=False)

    op.create_table('bindings',
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('instance_id', sa.String(length=255), nullable=False),
    sa.Column('service_id', sa.String(length=255), nullable=False),
    sa.Column('plan_id', sa.String(length=255), nullable=False),
    sa.Column('app_guid', sa.String(length=255), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('secret_nonce', sa.String(length=64), nullable=False),
    sa.Column('password_sha256', sa.String(length=64), nullable=False),
    sa.Column('request_fingerprint', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['service_instances.id'], name=op.f('fk_bindings_instance_id_service_instances'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_bindings')),
    sa.UniqueConstraint('password_sha256', name=op.f('uq_bindings_password_sha256')),
    sa.UniqueConstraint('username', name=op.f('uq_bindings_username'))
    )
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_bindings_instance_id'), ['instance_id'], unique=False)




def downgrade() -> None:
    
    with op.batch_alter_table('bindings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bindings_instance_id'))

    op.drop_table('bindings')
    with op.batch_alter_table('service_owners', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_owners_space_guid'))
        batch_op.drop_index(batch_op.f('ix_service_owners_organization_guid'))

    op.drop_table('service_owners')
    with op.batch_alter_table('service_instances', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_service_instances_space_guid'))
        batch_op.drop_index(batch_op.f('ix_service_instances_organization_guid'))

    op.drop_table('service_instances')
    op.drop_table('leases')
    op.drop_table('integration_attempts')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_instance_id_at')

    op.drop_table('audit_events')

