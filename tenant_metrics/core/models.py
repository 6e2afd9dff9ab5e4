"""The one schema (SQLAlchemy 2 declarative models). It changes only through a migration.

The broker writes instances, bindings and the audit trail; the gateway reads bindings
and instances to authenticate and scope tenants; sd reads and writes the owners of
Aiven services and takes leases so that several sd processes never integrate twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# OSB ids are opaque strings; Cloud Controller sends GUIDs, but the spec allows more.
ID_LENGTH = 255
NAME_LENGTH = 255


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on SQLite (which stores naive) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UtcDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UtcDateTime}


class ServiceInstance(Base):
    """A metrics service instance (``cf create-service``): who may see what."""

    __tablename__ = "service_instances"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    plan_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    # The plan's scope ("space" or "org") at the time of the last change; the gateway
    # enforces this without needing the catalog.
    scope: Mapped[str] = mapped_column(String(16))
    organization_guid: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    space_guid: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    organization_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    space_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    instance_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A digest of what makes a provision request "identical" (OSB 200 vs 409).
    request_fingerprint: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    bindings: Mapped[list[Binding]] = relationship(
        back_populates="instance", cascade="all, delete-orphan", passive_deletes=True
    )


class Binding(Base):
    """A binding or service key: one set of gateway credentials.

    The password is never stored. It is derived from ``secret_nonce`` with a key the DB
    does not hold (so an identical repeat of a bind can return the same credentials),
    and only its SHA-256 is kept for the gateway to verify against (the password is
    high-entropy, so a fast hash is enough).
    """

    __tablename__ = "bindings"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    instance_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("service_instances.id", ondelete="CASCADE"), index=True
    )
    service_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    plan_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    app_guid: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    kind: Mapped[str] = mapped_column(String(16))  # "app" or "key"
    username: Mapped[str] = mapped_column(String(64), unique=True)
    secret_nonce: Mapped[str] = mapped_column(String(64))
    # Unique and indexed: the gateway also accepts the password alone as a Bearer token.
    password_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    request_fingerprint: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    instance: Mapped[ServiceInstance] = relationship(back_populates="bindings")


class AuditEvent(Base):
    """Every change the broker makes, with who asked (originating identity) and the request id."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_instance_id_at", "instance_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(32))
    instance_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    binding_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    platform: Mapped[str | None] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    request_id: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class ServiceOwner(Base):
    """Who owns a Cloud Foundry service instance backed by an Aiven service (sd's cache).

    Keyed by the Cloud Foundry service instance guid found in the Aiven service name.
    ``missing`` is set when Cloud Controller no longer knows the instance: its targets go.
    """

    __tablename__ = "service_owners"

    service_instance_guid: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    service_instance_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    space_guid: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    space_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    organization_guid: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    organization_name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    missing: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved_at: Mapped[datetime] = mapped_column(default=utcnow)
    refreshed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lease(Base):
    """A named, expiring lock in the shared DB (e.g. "sd-integrator"), so only one holder acts."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column()


class IntegrationAttempt(Base):
    """sd's memory of integrations it tried to create, so failures back off across processes."""

    __tablename__ = "integration_attempts"

    aiven_service_name: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)


class SdDropConfirmation(Base):
    """An operator's word that a large drop of sd targets is real (``sd confirm-drop``).

    Every sd process withholding a mass deletion applies it while a confirmation is valid
    (``expires_at``); rows are kept as the record of who confirmed what and when.
    """

    __tablename__ = "sd_drop_confirmations"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    confirmed_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column(index=True)
    confirmed_by: Mapped[str] = mapped_column(String(NAME_LENGTH))
