"""HTTP helpers the adapters share (channels/, bot/ and the root's REST API): JSON errors,
body readers that turn unreadable input into a 4xx, the client's address behind proxies.
Imports nothing of the project, so any layer above crm may use it."""

from __future__ import annotations

import ipaddress
import json
import zlib
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

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


class SignatureError(Exception):
    """A webhook request is not authentic; `reason` is short and fit for a 4xx JSON body
    (it never contains the expected signature)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadInput(Exception):
    """A request that cannot be read as what the route expects: a 4xx with a JSON reason
    (`leadbot.web.answer_error` answers it; a handler may catch it to answer in its own words)."""

    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.code, self.detail, self.status = code, detail, status


_READ_STEP = 64 * 1024


def _too_large(limit: int) -> BadInput:
    return BadInput("too_large", f"body larger than {limit} bytes", 413)


def whole_body(request: web.Request, limit: int) -> bytes | None:
    """The body when it came whole with the head (the usual webhook), taken from the stream as
    it is without the awaits and copies of a read; None when more is to come (`read_body`).
    The stream is drained: for a handler that reads the body once and nothing else reads it.
    `BadInput` (413) past `limit` bytes."""
    content = request.content
    if not content.is_eof():
        return None
    body = content.read_nowait()
    if len(body) > limit:
        raise _too_large(limit)
    return body


async def read_body(request: web.Request, limit: int) -> bytes:
    """The request body: the one reader of the call webhooks, Twilio's callbacks, the Bitrix24
    REST and the content decoding, so they bound bodies alike. `BadInput` (413) past `limit`
    bytes, told by the Content-Length before anything is read, else after at most `limit`
    and one step. Not the app's client_max_size (a route's own limit may be above it). The
    stream is drained: nothing may read the body after (`request.read()`, `post()`)."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    body = whole_body(request, limit)
    if body is not None:
        return body
    out = bytearray()
    async for chunk in request.content.iter_chunked(_READ_STEP):
        out += chunk
        if len(out) > limit:
            raise _too_large(limit)
    return bytes(out)


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
