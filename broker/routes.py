"""The ten OSB routes, thin: parse once (broker/validation.py), call the service, answer.

Each view turns its HTTP request into the operation's frozen request type, hands it to
BrokerService, and writes the answer with openbrokerapi's response models (so the wire
shapes are openbrokerapi's). Errors are not handled here: they propagate to the app's one
error handler, broker/osb.py. Authentication, the API version and the originating
identity (``g.caller``) were checked by broker/app.py before any view runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from flask import Flask, Request, Response, g, request
from openbrokerapi.helper import _to_dict, to_json_response
from openbrokerapi.response import (
    BindResponse,
    CatalogResponse,
    EmptyResponse,
    GetInstanceResponse,
    LastOperationResponse,
    ProvisioningResponse,
    UpdateResponse,
)
from openbrokerapi.service_broker import OperationState

from broker import validation
from broker.errors import PayloadTooLarge
from broker.osb import Operation
from broker.service import BrokerService

INSTANCE = "/v2/service_instances/<instance_id>"
BINDING = INSTANCE + "/service_bindings/<binding_id>"

View = Callable[..., Response]


def register(app: Flask, service: BrokerService) -> None:
    """Add the ten OSB routes to ``app``; each endpoint is named by its Operation."""
    catalog = service.catalog
    dashboard_url = service.settings.dashboard_url  # of an instance id (per instance with SSO on)
    # The catalog never changes while we run: serialised once.
    catalog_json = json.dumps(_to_dict(CatalogResponse([catalog.to_osb()])))

    def route(rule: str, method: str, operation: Operation) -> Callable[[View], View]:
        def add(view: View) -> View:
            app.add_url_rule(rule, endpoint=operation.value, view_func=view, methods=[method])
            return view
        return add

    @route("/v2/catalog", "GET", Operation.CATALOG)
    def get_catalog() -> Response:
        return Response(catalog_json, mimetype="application/json")

    @route(INSTANCE, "PUT", Operation.PROVISION)
    def provision(instance_id: str) -> Response:
        req = validation.provision_request(instance_id, _json_body(request), catalog)
        created = service.provision(req, g.caller)
        return _reply(ProvisioningResponse(dashboard_url(req.instance_id), None),
                      HTTPStatus.CREATED if created else HTTPStatus.OK)

    @route(INSTANCE, "PATCH", Operation.UPDATE)
    def update(instance_id: str) -> Response:
        req = validation.update_request(instance_id, _json_body(request), catalog)
        service.update(req, g.caller)
        return _reply(UpdateResponse(None, dashboard_url(req.instance_id)))

    @route(INSTANCE, "DELETE", Operation.DEPROVISION)
    def deprovision(instance_id: str) -> Response:
        service.deprovision(validation.deprovision_request(instance_id, request.args, catalog), g.caller)
        return _reply(EmptyResponse())

    @route(INSTANCE, "GET", Operation.GET_INSTANCE)
    def get_instance(instance_id: str) -> Response:
        record = service.get_instance(validation.instance_query(instance_id, request.args, catalog))
        return _reply(GetInstanceResponse(record.service_id, record.plan_id, dashboard_url(record.id), parameters={}))

    @route(INSTANCE + "/last_operation", "GET", Operation.LAST_OPERATION)
    def last_operation(instance_id: str) -> Response:
        service.last_operation(validation.instance_query(instance_id, request.args, catalog))
        return _reply(LastOperationResponse(OperationState.SUCCEEDED, "the service instance is ready"))

    @route(BINDING, "PUT", Operation.BIND)
    def bind(instance_id: str, binding_id: str) -> Response:
        req = validation.bind_request(instance_id, binding_id, _json_body(request), catalog)
        result = service.bind(req, g.caller)
        return _reply(BindResponse(credentials=result.credentials),
                      HTTPStatus.CREATED if result.created else HTTPStatus.OK)

    @route(BINDING, "DELETE", Operation.UNBIND)
    def unbind(instance_id: str, binding_id: str) -> Response:
        service.unbind(validation.unbind_request(instance_id, binding_id, request.args, catalog), g.caller)
        return _reply(EmptyResponse())

    @route(BINDING, "GET", Operation.GET_BINDING)
    def get_binding(instance_id: str, binding_id: str) -> Response:
        # Always raises: NotFound (404) or NotSupported (501), see BrokerService.get_binding.
        service.get_binding(validation.binding_query(instance_id, binding_id, request.args, catalog))

    @route(BINDING + "/last_operation", "GET", Operation.LAST_BINDING_OPERATION)
    def last_binding_operation(instance_id: str, binding_id: str) -> Response:
        service.last_binding_operation(validation.binding_query(instance_id, binding_id, request.args, catalog))
        return _reply(LastOperationResponse(OperationState.SUCCEEDED, "the binding is ready"))


def _reply(model: Any, status: int = HTTPStatus.OK) -> Response:
    response: Response = to_json_response(model)
    response.status_code = status
    return response


def _json_body(req: Request) -> dict[str, Any]:
    return validation.parse_body(_read_body(req), req.mimetype)


def _read_body(req: Request) -> bytes:
    """The body, at most MAX_BODY_BYTES (else PayloadTooLarge), chunked bodies included."""
    limit = req.max_content_length or 0
    too_large = PayloadTooLarge(f"the request body must be at most {limit} bytes")
    if req.content_length is not None:
        if req.content_length > limit:
            raise too_large
        return req.get_data()
    # Chunked: werkzeug would silently truncate at the limit, so read one byte past it.
    environ = req.environ
    if "wsgi.input_terminated" not in environ:
        return b""
    body: bytes = environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        raise too_large
    return body
