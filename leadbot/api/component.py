"""The REST API as a service component: mounts /api/v1 from the route table."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Protocol

from aiohttp import web
from pydantic import ValidationError

from crm.dto import SYSTEM
from crm.errors import CrmError
from crm.facade import Crm
from crm.services.handmade import DuplicateWarning
from leadbot.api.auth import authenticate
from leadbot.api.bodies import Body
from leadbot.api.errors import ApiError, bad_request, from_crm_error
from leadbot.api.openapi import openapi_document
from leadbot.api.params import parse_args
from leadbot.api.routes import Answer, Args, Route, api_routes
from leadbot.api.serialize import to_json
from leadbot.api.writes import write_routes

Endpoint = Any  # aiohttp's handler type, kept loose to avoid its private aliases


def all_routes() -> list[Route]:
    """The data routes plus the public document that describes them all (itself included)."""
    routes = api_routes() + write_routes()
    document: dict[str, Any] = {}

    async def openapi(_: Crm, __: Args) -> Any:
        if not document:
            document.update(openapi_document(routes))
        return document

    routes.append(
        Route(
            "/openapi.json",
            "openapi",
            "This OpenAPI document (no token needed)",
            {"type": "object", "required": ["openapi", "info", "paths"]},
            openapi,
            public=True,
        )
    )
    return routes


# An Idempotency-Key: printable ASCII, as RFC 8941 strings (the draft standard's form).
_KEY = re.compile(r"[\x20-\x7e]{1,200}")


async def _body(route: Route, request: web.Request) -> Body:
    """The route's body model from the request's JSON (an empty body is `{}`)."""
    assert route.body is not None
    raw = await request.read()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_body", "the body must be a JSON object")
    try:
        return route.body.model_validate(data)
    except ValidationError as err:
        raise ApiError(422, "invalid_body", _reasons(err)) from None


def _reasons(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_url=False, include_input=False)[:5]:
        where = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def _json(status: int, body: Any) -> web.Response:
    return web.json_response(body, status=status)


async def _run(route: Route, crm: Crm, request: web.Request) -> web.Response:
    caller = None
    # Authenticate first: a caller without a token learns nothing about parameters.
    if not route.public:
        caller = await authenticate(request, crm.tokens)
        if route.scope not in caller.scopes:
            raise ApiError(
                403,
                "insufficient_scope",
                f"this token may not {route.scope}; create one with "
                f"`leadbot token create NAME --scope read,{route.scope}`",
            )
    args = parse_args(route.params, request.query, request.match_info, route.one_of)
    args["actor"] = caller.actor if caller else SYSTEM
    key = request.headers.get("Idempotency-Key")
    if route.body is None or caller is None or key is None:
        if route.body is not None:
            args["body"] = await _body(route, request)
        return await _answer(route, crm, args)
    if not _KEY.fullmatch(key):
        raise bad_request("Idempotency-Key must be 1-200 printable ASCII characters")
    raw = await request.read()
    digest = hashlib.sha256(f"{route.method} {request.path}\n".encode() + raw).hexdigest()
    stored = await crm.idempotency.begin(caller.token_id, key, digest)
    if stored is not None:
        resp = web.Response(text=stored.body, status=stored.status, content_type="application/json")
        resp.headers["Idempotent-Replayed"] = "true"
        return resp
    try:
        args["body"] = await _body(route, request)
        resp = await _answer(route, crm, args)
    except ApiError as err:
        resp = err.response()
    except CrmError as err:
        resp = _crm_refusal(err)
    except BaseException:
        await crm.idempotency.abandon(caller.token_id, key)
        raise
    assert resp.text is not None
    await crm.idempotency.finish(caller.token_id, key, resp.status, resp.text)
    return resp


async def _answer(route: Route, crm: Crm, args: Args) -> web.Response:
    try:
        body = await route.handler(crm, args)
    except CrmError as err:
        return _crm_refusal(err)
    if isinstance(body, Answer):
        return _json(body.status, body.body)
    return _json(route.status, body)


def _crm_refusal(err: CrmError) -> web.Response:
    if isinstance(err, DuplicateWarning):
        return _json(409, {"error": err.code, "detail": str(err), "hits": to_json(err.hits)})
    return from_crm_error(err).response()


def endpoint(route: Route, crm: Crm) -> Endpoint:
    async def handle(request: web.Request) -> web.Response:
        try:
            return await _run(route, crm, request)
        except ApiError as err:
            return err.response()
        except CrmError as err:
            return _crm_refusal(err)

    return handle


class ApiComponent:
    def __init__(self, crm: Crm) -> None:
        self.crm = crm
        self.table = all_routes()

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get(r.full_path, endpoint(r, self.crm), allow_head=False)
            if r.method == "GET"
            else web.route(r.method, r.full_path, endpoint(r, self.crm))
            for r in self.table
        ]

    async def start(self) -> None:
        """Nothing to start: the API only answers requests."""

    async def stop(self) -> None:
        """Nothing to stop."""


class ApiHost(Protocol):
    @property
    def crm(self) -> Crm: ...


def api_component(service: ApiHost) -> ApiComponent:
    """Always on: without tokens every request is refused, which is safe."""
    return ApiComponent(service.crm)
