"""PostgreSQL single-statement writes: each change and its audit event in one round trip.

A data-modifying CTE makes the change and the AuditEvent insert one atomic statement, so
it runs in autocommit: one round trip instead of BEGIN, change, audit, COMMIT. The audit
row exists exactly when the change happened (the INSERT selects FROM the CTE's RETURNING).
SQLite has no data-modifying CTEs; broker/store.py keeps the transactional path for it.
"""

from __future__ import annotations

from sqlalchemy import text

_AUDIT_COLUMNS = "at, action, instance_id, binding_id, platform, user_id, request_id, details"
_AUDIT_VALUES = ":at, :action, {instance}, {binding}, :platform, :user_id, :request_id"

PROVISION = text(f"""
WITH ins AS (
    INSERT INTO service_instances (id, service_id, plan_id, scope, organization_guid, space_guid,
        organization_name, space_name, instance_name, parameters, request_fingerprint, created_at, updated_at)
    VALUES (:id, :service_id, :plan_id, :scope, :organization_guid, :space_guid,
        :organization_name, :space_name, :instance_name, CAST(:parameters AS json), :request_fingerprint,
        :created_at, :updated_at)
    ON CONFLICT DO NOTHING
    RETURNING id
)
INSERT INTO audit_events ({_AUDIT_COLUMNS})
SELECT {_AUDIT_VALUES.format(instance="ins.id", binding="NULL")}, CAST(:details AS json) FROM ins
RETURNING instance_id
""")

BIND = text(f"""
WITH ins AS (
    INSERT INTO bindings (id, instance_id, service_id, plan_id, app_guid, kind, username, secret_nonce,
        password_sha256, request_fingerprint, created_at)
    VALUES (:id, :instance_id, :service_id, :plan_id, :app_guid, :kind, :username, :secret_nonce,
        :password_sha256, :request_fingerprint, :created_at)
    ON CONFLICT DO NOTHING
    RETURNING id, instance_id
)
INSERT INTO audit_events ({_AUDIT_COLUMNS})
SELECT {_AUDIT_VALUES.format(instance="ins.instance_id", binding="ins.id")}, CAST(:details AS json) FROM ins
RETURNING binding_id
""")

UNBIND = text(f"""
WITH del AS (
    DELETE FROM bindings WHERE id = :binding_id AND instance_id = :instance_id
    RETURNING id, instance_id
)
INSERT INTO audit_events ({_AUDIT_COLUMNS})
SELECT {_AUDIT_VALUES.format(instance="del.instance_id", binding="del.id")}, CAST(:details AS json) FROM del
RETURNING binding_id
""")

# The bindings go by ON DELETE CASCADE; `b` reads them from the statement's snapshot. That
# is exactly what the cascade removes only because Store.deprovision first locks the
# instance row FOR UPDATE in the same transaction (no bind can commit after that lock).
DEPROVISION = text(f"""
WITH b AS (
    SELECT id FROM bindings WHERE instance_id = :instance_id
), del AS (
    DELETE FROM service_instances WHERE id = :instance_id RETURNING id
)
INSERT INTO audit_events ({_AUDIT_COLUMNS})
SELECT {_AUDIT_VALUES.format(instance="del.id", binding="NULL")},
    json_build_object('revoked_bindings', COALESCE((SELECT json_agg(b.id ORDER BY b.id) FROM b), CAST('[]' AS json)))
FROM del
RETURNING details
""")
