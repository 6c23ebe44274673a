"""The OpenAPI 3.1 document, generated from the route table the server registers."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from leadbot.api.bodies import body_schemas
from leadbot.api.params import Param, one_of_rule
from leadbot.api.routes import Route
from leadbot.api.serialize import component_schemas

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["error", "detail"],
}
ERROR_TEXT = {
    400: "A query or path value is invalid (outside its schema, or an undeclared parameter), "
    "a body is not JSON, or a write breaks a rule of the CRM (an unknown status, a deal "
    "without a client); `detail` says which and why",
    401: "Missing, malformed, unknown or revoked bearer token",
    403: "The token lacks the scope (`insufficient_scope`), or its rep may not do this",
    404: "No record with this id",
    409: "The record's state refuses it; or, creating a lead, contact or company or adding "
    "phones or emails to one (PATCH), phones or emails that are known already: `hits` lists "
    "each holder (send `force`, or on a create `attach_to`, to go on); or a request with the "
    "same Idempotency-Key is still being answered",
    413: "The body is larger than the server takes",
    422: "The JSON body breaks its schema (`invalid_body`, `detail` says where), or the "
    "Idempotency-Key was used with another body (`idempotency_key_reused`)",
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retry safe: the same key with the same body answers what the first "
    "request answered (kept 24 hours, header Idempotent-Replayed: true); another body is 422.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[ -~]*$"},
}

DUPLICATE_ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {
        **ERROR_SCHEMA["properties"],
        "hits": {"type": "array", "items": {"$ref": "#/components/schemas/DuplicateHit"}},
    },
    "required": ["error", "detail"],
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
        str(route.status): {
            "description": "OK" if route.status == 200 else "Created",
            "content": {"application/json": {"schema": route.response}},
        }
    }
    if route.status == 201:  # attach_to: the data went onto an existing record
        responses["200"] = {
            "description": "Attached to the record attach_to names",
            "content": {"application/json": {"schema": route.response}},
        }
    codes = [400]  # every route refuses undeclared query parameters
    if not route.public:
        codes.append(401)
    if route.can_404:
        codes.append(404)
    codes = sorted({*codes, *route.refusals})
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
    if route.body is not None:
        op["parameters"].append(IDEMPOTENCY_KEY)
        op["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{route.body.__name__}"}
                }
            },
        }
    if route.public:
        op["security"] = []
    return op


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    error_ref = {"$ref": "#/components/schemas/Error"}
    duplicate_ref = {"$ref": "#/components/schemas/DuplicateError"}
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(r.full_path, {})[r.method.lower()] = _operation(r)
    bodies = body_schemas([r.body for r in routes if r.body is not None])
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Leadbot REST API",
            "version": _version(),
            "description": (
                "Leads, deals, contacts, companies, their activities, the inbound event log "
                "and duplicate lookups; with a `write` token also hand-made records "
                "and edits (duplicate-checked), comments, reminders, conversion, status and "
                "stage changes, assignment. Authenticate with `Authorization: Bearer "
                "<token>`; create tokens with "
                "`leadbot token create NAME --scope read,write [--rep ID]`. "
                'Errors are JSON `{"error": code, "detail": text}`. Unknown query '
                "parameters are refused with 400."
            ),
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **component_schemas(),
                **bodies,
                "Error": ERROR_SCHEMA,
                "DuplicateError": DUPLICATE_ERROR,
            },
            "responses": {
                f"E{code}": {
                    "description": text,
                    "content": {
                        "application/json": {"schema": duplicate_ref if code == 409 else error_ref}
                    },
                    **(_CHALLENGE if code == 401 else {}),
                }
                for code, text in ERROR_TEXT.items()
            },
        },
    }
