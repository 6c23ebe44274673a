"""HTTP plumbing shared by every route: JSON errors, liveness, readiness and metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Nothing a client sends produces a bare 500 page: errors are JSON with a reason."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status, "http_error"
        )
        return json_error(exc.status, code, exc.reason)
    except json.JSONDecodeError as exc:
        return json_error(400, "bad_json", f"the body is not valid JSON: {exc.msg}")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error; it has been logged")


Check = Callable[[], Awaitable[None]]


def health_routes(checks: dict[str, Check], metrics_text: Callable[[], bytes]) -> list[Any]:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        results: dict[str, str] = {}
        ok = True
        for name, check in checks.items():
            try:
                await check()
                results[name] = "ok"
            except Exception as exc:  # a readiness probe reports, never raises
                ok = False
                results[name] = f"error: {type(exc).__name__}"
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "checks": results}, status=200 if ok else 503
        )

    async def metrics(_: web.Request) -> web.Response:
        resp = web.Response(body=metrics_text())
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    return [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
    ]


def prometheus_text(registry: Any) -> bytes:
    return bytes(generate_latest(registry))
