"""HTTP plumbing shared by every route: JSON errors, liveness, readiness and metrics."""

from __future__ import annotations

import ipaddress
import json
import logging
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _client_fault(exc: BaseException | None) -> str | None:
    """Why a request could not be read when that is the client's doing, else None: a
    malformed HTTP message, or a body that does not decode as its Content-Encoding says."""
    if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
        return exc.message
    if isinstance(exc, web.RequestPayloadError):
        return str(exc).replace("\n", " ")
    return None


class _ClientProtocolErrors(logging.Filter):
    """aiohttp answers a malformed HTTP message (a bad header byte, a broken request line)
    with a plain 400, and drains a body it cannot decode after the reply; both it logs with
    a traceback at ERROR, as if the server had failed. It is the client's fault: one INFO
    line without the traceback says enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        reason = _client_fault(record.exc_info[1] if record.exc_info else None)
        if reason is not None:
            record.msg = f"{record.msg}: %s"
            record.args = (*(record.args if isinstance(record.args, tuple) else ()), reason)
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("aiohttp.server").addFilter(_ClientProtocolErrors())


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(items: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(request: web.Request, trusted: Sequence[Network]) -> str:
    """The client's address. Behind a trusted reverse proxy it is the last X-Forwarded-For
    hop that is not itself a trusted proxy (hops further left are the client's own say and
    can be forged); from anybody else the header counts for nothing."""
    peer = request.remote or "unknown"
    if not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage where an address belongs: the proxy's own is safer
    return peer


def json_error(status: int, code: str, detail: str) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status)


class BadInput(Exception):
    """A request that cannot be read as what the route expects: a 4xx with a JSON reason
    (`error_middleware` answers it; a handler may catch it to answer in its own words)."""

    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.code, self.detail, self.status = code, detail, status


# What aiohttp's form parser raises on bytes it cannot read: bad UTF-8 or percent-encoding
# (ValueError), an unknown charset (LookupError), an unknown part encoding (RuntimeError),
# a broken deflate part (zlib.error), a part without a name or a missing boundary (ValueError).
_FORM_ERRORS = (ValueError, LookupError, RuntimeError, TypeError, zlib.error, HttpProcessingError)


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The url-encoded or multipart form of a request; `BadInput` when it cannot be read."""
    try:
        return await request.post()
    except web.HTTPException:
        raise  # too large: aiohttp's own 413
    except _FORM_ERRORS as exc:
        raise BadInput("bad_form", f"the form body cannot be read: {str(exc)[:200]}") from None


async def read_json(request: web.Request) -> Any:
    """The JSON document of a request body (UTF-8, -16 or -32, whatever the charset parameter
    says); `BadInput` when it is not JSON or nested too deeply to read."""
    body = await request.read()
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BadInput("bad_json", "the body is not valid JSON") from None


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
    except BadInput as exc:
        return json_error(exc.status, exc.code, exc.detail)
    except (HttpProcessingError, web.RequestPayloadError) as exc:
        reason = _client_fault(exc)
        if reason is None:
            raise
        return json_error(400, "bad_request", f"the request body cannot be read: {reason}")
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
