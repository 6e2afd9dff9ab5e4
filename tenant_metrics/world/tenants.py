"""Tenants inserted as the broker would insert them (rows + credentials.issue), and revoked."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import delete

from tenant_metrics.core import credentials, db
from tenant_metrics.core.models import Binding, ServiceInstance

KEY = credentials.derive_key("gateway-tests-key-material")


@dataclass(frozen=True, slots=True)
class TenantCreds:
    username: str
    password: str = field(repr=False)
    instance_id: str
    binding_id: str
    org: str
    space: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)


def add_tenant(database_url: str, scope: str, org: str, space: str, instance_name: str | None = None) -> TenantCreds:
    """Insert an instance and a binding as the broker would (models + credentials.issue)."""
    engine = db.make_engine(database_url)
    try:
        issued = credentials.issue(KEY)
        instance_id = str(uuid.uuid4())
        binding_id = str(uuid.uuid4())
        with db.session_scope(db.make_session_factory(engine), write=True) as session:
            session.add(
                ServiceInstance(
                    id=instance_id,
                    service_id="svc",
                    plan_id=f"plan-{scope}",
                    scope=scope,
                    organization_guid=org,
                    space_guid=space,
                    instance_name=instance_name,
                    parameters={},
                    request_fingerprint="fp",
                )
            )
            session.flush()
            session.add(
                Binding(
                    id=binding_id,
                    instance_id=instance_id,
                    service_id="svc",
                    plan_id=f"plan-{scope}",
                    app_guid=None,
                    kind="key",
                    username=issued.username,
                    secret_nonce=issued.secret_nonce,
                    password_sha256=issued.password_sha256,
                    request_fingerprint="fp",
                )
            )
        return TenantCreds(issued.username, issued.password, instance_id, binding_id, org, space)
    finally:
        engine.dispose()


def revoke(database_url: str, binding_id: str) -> None:
    engine = db.make_engine(database_url)
    try:
        with db.session_scope(db.make_session_factory(engine), write=True) as session:
            session.execute(delete(Binding).where(Binding.id == binding_id))
    finally:
        engine.dispose()
