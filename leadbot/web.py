"""The root's HTTP plumbing: the app's middleware, outages, liveness, readiness and metrics.
The helpers routes share (JSON errors, body readers) are in `httpkit`."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import StreamReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from crm.outage import is_outage
from crm.supervisor import Health, describe
from httpkit import BadInput, json_error, read_body
from leadbot.refusals import Refusals

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


# Content codings a request body may come in (RFC 9110 8.4.1); anything else is a 415.
_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_DECODE_STEP = 64 * 1024


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    """`data` decoded from one content coding; `BadInput` when it is not a complete stream
    of that coding (400) or inflates past `limit` bytes (413), found after at most
    `limit` + one step of output, so a bomb costs neither memory nor time."""
    wbits = _CODINGS[coding]
    if coding == "deflate" and data[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS  # raw deflate without the zlib header, as some clients send
    out = bytearray()
    decoder = zlib.decompressobj(wbits)
    pending = data
    try:
        while pending:
            out += decoder.decompress(pending, _DECODE_STEP)
            if len(out) > limit:
                raise BadInput("too_large", f"the body inflates past {limit} bytes", 413)
            pending = decoder.unconsumed_tail
            if decoder.eof and decoder.unused_data and wbits > 16:
                pending = decoder.unused_data  # the next member of a multi-member gzip
                decoder = zlib.decompressobj(wbits)
    except zlib.error as exc:
        raise BadInput("bad_encoding", f"the body is not valid {coding}: {exc}") from None
    if not decoder.eof:
        raise BadInput("bad_encoding", f"the {coding} body is truncated")
    if decoder.unused_data:
        raise BadInput("bad_encoding", f"data after the end of the {coding} body")
    return bytes(out)


async def decoded(request: web.Request) -> web.Request:
    """Request bodies are decoded here, not by aiohttp (the runner has auto_decompress off):
    aiohttp leaves a handler waiting forever on a deflate body that ends early, and passes
    a truncated gzip body on as if complete. Every route gets the decoded body, bounded by
    the app's client_max_size (also for the Bitrix REST route, whose own limit is for plain
    bodies); an unreadable one never reaches a handler (BadInput)."""
    header = request.headers.get("Content-Encoding")
    if header is None:
        return request
    codings = [c.strip().lower() for c in header.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    unknown = [c for c in codings if c not in _CODINGS]
    if unknown:
        raise BadInput(
            "unsupported_encoding",
            f"content coding {unknown[0][:40]!r} is not supported (gzip, deflate, identity)",
            415,
        )
    limit = request.client_max_size
    body = await read_body(request, limit)
    for coding in reversed(codings):  # the last applied is undone first
        if body:
            body = _inflate(body, coding, limit)
    # The decoded body becomes the request's stream, so read(), post(), multipart() and
    # content all see it; a limit above its size keeps the connection from pausing. The
    # headers stay as they came (clone() cannot carry obs-text header values).
    stream = StreamReader(request.protocol, len(body) + 1, loop=asyncio.get_running_loop())
    stream.feed_data(body)
    stream.feed_eof()
    request._payload = stream  # no public way to give a request another body
    return request.clone()  # a clone: `content` is cached on the request


RETRY_AFTER = 5  # seconds a client is asked to wait during an outage
CHECK_TIMEOUT = 5.0  # a readiness check that hangs is a failed one


_KINDS = (
    (("redis",), "queue (redis)"),
    (("sqlalchemy", "asyncpg", "aiosqlite", "sqlite3"), "database"),
)


def _kind_of(module: str) -> str | None:
    for prefixes, kind in _KINDS:
        if module.split(".", 1)[0] in prefixes:
            return kind
    return None


def outage_kind(exc: BaseException) -> str:
    """What is down, in words an operator searches the log for: by the exception's class, or
    by the library that raised it (a refused connection is a bare OSError from either)."""
    current: BaseException | None = exc
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = _kind_of(type(current).__module__)
        for module in reversed(_modules(current)):  # the innermost library frame tells
            if kind is not None:
                break
            kind = _kind_of(module)
        if kind is not None:
            return kind
        if isinstance(current, OSError) and not isinstance(current, ConnectionError | TimeoutError):
            return "journal disk"  # is_outage let only a disk's errors through
        current = current.__cause__ or current.__context__
    return "a server"


def _modules(exc: BaseException) -> list[str]:
    """The modules of the frames `exc` went through, outermost first."""
    names: list[str] = []
    tb = exc.__traceback__
    while tb is not None:
        names.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    return names


class Outages:
    """Logs an outage once when it starts (WARNING, naming what is down) and once when it
    ends, with its duration: on the first successful request to a route that met it, or when
    a readiness check of that kind passes."""

    def __init__(self) -> None:
        self._open: dict[str, _Outage] = {}

    def begin(self, exc: BaseException, where: str) -> str:
        kind = outage_kind(exc)
        outage = self._open.get(kind)
        if outage is None:
            outage = self._open[kind] = _Outage(time.monotonic())
            log.warning(
                "%s unavailable (%s on %s); answering 503 with Retry-After until it is back",
                kind,
                describe(exc),
                where,
            )
        outage.routes.add(where)
        outage.refused += 1
        return kind

    @property
    def any_open(self) -> bool:
        return bool(self._open)

    def succeeded(self, where: str) -> None:
        for kind, outage in list(self._open.items()):
            if where in outage.routes:
                self.end(kind)

    def end(self, kind: str) -> None:
        outage = self._open.pop(kind, None)
        if outage is not None:
            log.warning(
                "%s available again after %.1f s (%d request(s) answered 503)",
                kind,
                time.monotonic() - outage.started,
                outage.refused,
            )


@dataclass
class _Outage:
    started: float
    routes: set[str] = field(default_factory=set)
    refused: int = 0


def _where(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return f"{request.method} {resource.canonical if resource is not None else request.path}"


# Headers that describe an HTTPException's own text body; its JSON replacement has its own.
_BODY_HEADERS = frozenset(
    {"content-type", "content-length", "content-encoding", "transfer-encoding"}
)


def with_headers_of(exc: web.HTTPException, answer: web.Response) -> web.Response:
    """`answer` with the headers `exc` carries for the client (a 405's Allow, a 401's
    WWW-Authenticate, a Retry-After, a Location …): only its body is replaced."""
    for name, value in exc.headers.items():
        if name.lower() not in _BODY_HEADERS:
            answer.headers.add(name, value)
    return answer


def edge_middleware(outages: Outages, refusals: Refusals) -> Middleware:
    """The one middleware of the app: every request's body decoded (`decoded`), its errors
    answered (`answer_error`), its 4xx counted and logged and its webhook's health noted
    (`Refusals`). One coroutine for all three: it runs on every webhook request."""

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            try:
                if "Content-Encoding" in request.headers:
                    response = await handler(await decoded(request))
                else:
                    response = await handler(request)
            except Exception as exc:
                response = answer_error(exc, request, outages)
            else:
                if response.status < 500 and outages.any_open:  # the route only when asked
                    outages.succeeded(_where(request))
        except web.HTTPException as exc:  # one answer_error passes on as it is
            refusals.answered(request, exc)
            raise
        refusals.answered(request, response)
        return response

    return edge


# A channel's paths are routed only when the channel is configured, so a request to one of
# them that nothing serves means the channel is off. Said as such, with the setting that turns
# it on: a first run's documented curl otherwise gets a bare "Not Found", as for a typo.
_OFF_PATHS = {
    "/hooks/calls": ("the generic call webhook", "phone.webhook_secret"),
    "/hooks/calls/lookup": ("the caller lookup", "phone.lookup_token"),
    "/hooks/twilio/voice": ("the Twilio voice webhook", "phone.twilio_auth_token"),
    "/hooks/twilio/status": ("the Twilio voice webhook", "phone.twilio_auth_token"),
    "/hooks/twilio/recording": ("the Twilio voice webhook", "phone.twilio_auth_token"),
    "/hooks/twilio/sms": ("the SMS channel", "sms.account_sid and sms.auth_token"),
    "/hooks/whatsapp": ("the WhatsApp webhook", "whatsapp.verify_token and whatsapp.app_secret"),
}


def switched_off(path: str) -> str | None:
    """Why nothing serves `path` when it is a channel's (what to set), else None."""
    off = _OFF_PATHS.get(path)
    if off is None:
        if path.startswith("/rest/"):  # with the phone on, a catch-all serves all of /rest/
            off = ("the Bitrix24 REST", "phone.bitrix_token")
        elif path.startswith("/forms/") and path.count("/") == 2:
            return "no web form is configured: add a [[forms]] block with this key"
        else:
            return None
    what, setting = off
    return f"{what} is not configured: set {setting}"


def answer_error(exc: Exception, request: web.Request, outages: Outages) -> web.Response:
    """Nothing a client sends produces a bare 500 page: errors are JSON with a reason; a
    server or disk that is down is a 503 the client may retry, logged once per outage.
    Raises `exc` again when it is an answer already (a redirect, a JSON HTTP error)."""
    if isinstance(exc, web.HTTPException):
        if exc.status < 400 or exc.content_type == "application/json":
            raise exc
        if exc.status == 404 and (off := switched_off(request.path)) is not None:
            return json_error(404, "not_configured", off)
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status, "http_error"
        )
        return with_headers_of(exc, json_error(exc.status, code, exc.reason))
    if isinstance(exc, BadInput):
        return json_error(exc.status, exc.code, exc.detail)
    if isinstance(exc, HttpProcessingError | web.RequestPayloadError):
        reason = _client_fault(exc)
        if reason is None:
            raise exc
        return json_error(400, "bad_request", f"the request body cannot be read: {reason}")
    if isinstance(exc, json.JSONDecodeError):
        return json_error(400, "bad_json", f"the body is not valid JSON: {exc.msg}")
    if is_outage(exc):
        kind = outages.begin(exc, _where(request))
        answer = json_error(503, "unavailable", f"{kind} unavailable; try again in {RETRY_AFTER} s")
        answer.headers["Retry-After"] = str(RETRY_AFTER)
        return answer
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return json_error(500, "internal", "internal error; it has been logged")


Check = Callable[[], Awaitable[Health]]


async def run_check(check: Check) -> Health:
    try:
        return await asyncio.wait_for(check(), CHECK_TIMEOUT)
    except Exception as exc:  # a readiness probe reports, never raises
        return Health(False, {"error": describe(exc)})


def health_routes(
    checks: Callable[[], dict[str, Check]], metrics_text: Callable[[], Awaitable[bytes]]
) -> list[Any]:
    """/healthz: the process answers. /readyz: every check, as JSON, 503 when one fails.
    /metrics: Prometheus text."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        named = checks()
        answers = await asyncio.gather(*(run_check(c) for c in named.values()))
        results = {name: {"ok": h.ok, **h.detail} for name, h in zip(named, answers, strict=True)}
        ok = all(h.ok for h in answers)
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "checks": results}, status=200 if ok else 503
        )

    async def metrics(_: web.Request) -> web.Response:
        resp = web.Response(body=await metrics_text())
        resp.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return resp

    return [
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/metrics", metrics),
    ]


def prometheus_text(registry: Any) -> bytes:
    return bytes(generate_latest(registry))
