"""The OpenAPI 3.1 document, generated from the route table the server registers."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from leadbot.api.params import Param, one_of_rule
from leadbot.api.routes import Route
from leadbot.api.serialize import component_schemas

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["error", "detail"],
}
ERROR_TEXT = {
    400: "A query or path value is invalid (outside its schema, or an undeclared parameter); "
    "`detail` says which and why",
    401: "Missing, malformed, unknown or revoked bearer token",
    404: "No record with this id",
}

_CHALLENGE = {
    "headers": {
        "WWW-Authenticate": {
            "description": "The bearer challenge (RFC 6750)",
            "schema": {"type": "string"},
        }
    }
}


def _version() -> str:
    try:
        return version("leadbot")
    except PackageNotFoundError:
        return "0"


def _parameter(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": p.name,
        "in": p.location,
        "description": p.description,
        "required": p.required or p.location == "path",
        "schema": p.schema(),
    }
    if p.repeatable:
        out["style"], out["explode"] = "form", True
    return out


def _operation(route: Route) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": route.response}},
        }
    }
    codes = [400]  # every route refuses undeclared query parameters
    if not route.public:
        codes.append(401)
    if route.can_404:
        codes.append(404)
    for code in codes:
        responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "parameters": [_parameter(p) for p in route.params],
        "responses": responses,
    }
    if route.one_of:
        # A rule across parameters, which their schemas cannot state: said in words, and
        # for tools as an extension.
        rule = one_of_rule(route.one_of)
        op["description"] = f"At least one of {', '.join(route.one_of)} is required."
        op["x-required-one-of"] = list(route.one_of)
        responses["400"] = {
            "description": f"{ERROR_TEXT[400]}; also when none is given ({rule})",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    if route.public:
        op["security"] = []
    return op


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    error_ref = {"$ref": "#/components/schemas/Error"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Leadbot REST API",
            "version": _version(),
            "description": (
                "Read access to leads, deals, contacts, companies, their activities, the "
                "inbound event log and duplicate lookups. Authenticate with "
                "`Authorization: Bearer <token>`; create tokens with `leadbot token create`. "
                'Errors are JSON `{"error": code, "detail": text}`. Unknown query '
                "parameters are refused with 400."
            ),
        },
        "security": [{"bearer": []}],
        "paths": {r.full_path: {"get": _operation(r)} for r in routes},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**component_schemas(), "Error": ERROR_SCHEMA},
            "responses": {
                f"E{code}": {
                    "description": text,
                    "content": {"application/json": {"schema": error_ref}},
                    **(_CHALLENGE if code == 401 else {}),
                }
                for code, text in ERROR_TEXT.items()
            },
        },
    }
