"""The REST API as a service component: mounts /api/v1 from the route table."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from crm.errors import CrmError
from crm.facade import Crm
from leadbot.api.auth import authenticate
from leadbot.api.errors import ApiError, from_crm_error
from leadbot.api.openapi import openapi_document
from leadbot.api.params import parse_args
from leadbot.api.routes import Args, Route, api_routes

Endpoint = Any  # aiohttp's handler type, kept loose to avoid its private aliases


def all_routes() -> list[Route]:
    """The data routes plus the public document that describes them all (itself included)."""
    routes = api_routes()
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


def endpoint(route: Route, crm: Crm) -> Endpoint:
    async def handle(request: web.Request) -> web.Response:
        try:
            # Authenticate first: a caller without a token learns nothing about parameters.
            if not route.public:
                await authenticate(request, crm.tokens)
            args = parse_args(route.params, request.query, request.match_info, route.one_of)
            body = await route.handler(crm, args)
        except ApiError as err:
            return err.response()
        except CrmError as err:
            return from_crm_error(err).response()
        return web.json_response(body)

    return handle


class ApiComponent:
    def __init__(self, crm: Crm) -> None:
        self.crm = crm
        self.table = all_routes()

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.get(r.full_path, endpoint(r, self.crm), allow_head=False) for r in self.table]

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
