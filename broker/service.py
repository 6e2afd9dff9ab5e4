"""BrokerService: what each OSB operation does, on typed requests, over the Store.

It knows nothing of HTTP: it takes the frozen requests that broker/validation.py built
(already checked, not checked again), returns domain values, and raises our errors
(tenant_metrics.core.errors, broker/errors.py); broker/osb.py turns those into OSB answers.
Every operation is synchronous.
"""

from __future__ import annotations

from typing import NoReturn

from broker.catalog import Catalog
from broker.config import BrokerSettings
from broker.domain import (
    BindingQuery,
    BindingRecord,
    BindRequest,
    BindResult,
    Caller,
    DeprovisionRequest,
    InstanceQuery,
    InstanceRecord,
    ProvisionRequest,
    UnbindRequest,
    UpdateRequest,
    binding_credentials,
)
from broker.errors import NotSupported
from broker.store import Store
from tenant_metrics.core import credentials
from tenant_metrics.core.errors import NotFound


class BrokerService:
    def __init__(self, settings: BrokerSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.catalog = Catalog.from_settings(settings.catalog, settings.dashboard_client)

    # -- instances ---------------------------------------------------------------------

    def provision(self, req: ProvisionRequest, caller: Caller) -> bool:
        """True if created, False for an identical repeat (Conflict if it differs)."""
        return self.store.provision(req, caller).created

    def update(self, req: UpdateRequest, caller: Caller) -> InstanceRecord:
        return self.store.update(req, caller)

    def deprovision(self, req: DeprovisionRequest, caller: Caller) -> None:
        self.store.deprovision(req.instance_id, caller)

    def get_instance(self, query: InstanceQuery) -> InstanceRecord:
        return self.store.get_instance(query.instance_id)

    def last_operation(self, query: InstanceQuery) -> None:
        """An instance that exists has succeeded (NotFound otherwise)."""
        self.store.get_instance(query.instance_id)

    # -- bindings ----------------------------------------------------------------------

    def bind(self, req: BindRequest, caller: Caller) -> BindResult:
        key = self.settings.credentials_key
        outcome = self.store.bind(req, caller, key)
        binding = outcome.binding
        assert binding is not None
        # The password is derived again from the stored nonce: a repeat gets the same one,
        # unless CREDENTIALS_KEY changed since; then the (never delivered) secret is replaced.
        issued = credentials.issue(key, binding.username, binding.secret_nonce)
        if not credentials.verify(issued.password, binding.password_sha256):
            binding = self.store.rekey(binding, caller, key)
            issued = credentials.issue(key, binding.username, binding.secret_nonce)
        return BindResult(
            created=outcome.created,
            credentials=binding_credentials(self.settings.gateway_public_url, outcome.instance, issued),
        )

    def unbind(self, req: UnbindRequest, caller: Caller) -> None:
        self.store.unbind(req.instance_id, req.binding_id, caller)

    def get_binding(self, query: BindingQuery) -> NoReturn:
        """bindings_retrievable is false (docs/broker.md): credentials leave the broker only
        in the answer to a bind. NotFound for an unknown binding, else NotSupported."""
        self._binding(query)
        raise NotSupported(
            "bindings are not retrievable from this broker (bindings_retrievable: false); "
            "credentials are returned by the bind request"
        )

    def last_binding_operation(self, query: BindingQuery) -> None:
        """A binding that exists has succeeded (NotFound otherwise)."""
        self._binding(query)

    def _binding(self, query: BindingQuery) -> BindingRecord:
        record = self.store.find_binding(query.binding_id)
        if record.instance_id != query.instance_id:
            raise NotFound(f"binding {query.binding_id} does not exist")
        return record
