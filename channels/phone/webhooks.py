"""HTTP handlers of the push formats: our generic JSON webhook and Twilio's voice / status
callbacks. Each request is verified, parsed, queued and answered at once; intake runs later.

Replies: 202 `{"status": "accepted"}` when queued, 200 `{"status": "duplicate"}` for a replay
of an event queued lately, 200 `{"status": "ignored"}` for an internal call; 401 / 400 / 422
with `{"error", "detail"}` otherwise. Twilio endpoints answer TwiML on success.

The generic webhook queues the validated document itself and the worker turns it into the
event: the number is parsed there, off the request's path. An internal call the reply cannot
tell without parsing (one of our own numbers written nationally) is dropped by the worker.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
from aiohttp import web
from multidict import MultiDict, MultiDictProxy, MultiMapping
from yarl import query_to_pairs

from channels.phone.calls import (
    CallDirection,
    CallReport,
    CallStage,
    PayloadError,
    is_endpoint_uri,
)
from channels.phone.context import PhoneContext, QueueStatus
from channels.phone.generic import MAX_BODY, read_call
from channels.phone.signatures import GENERIC_HEADER, check_generic
from channels.phone.twilio import (
    is_recording_callback,
    parse_recording,
    parse_twilio,
    twiml_response,
)
from httpkit import BadInput, SignatureError, json_error, read_body, whole_body
from httpkit.twilio import SETTINGS_HEADER, TWILIO_HEADER, algorithm_of, verify_twilio
from matching.text import clean_text

TWILIO_VOICE_PATH = "/hooks/twilio/voice"
TWILIO_STATUS_PATH = "/hooks/twilio/status"
TWILIO_RECORDING_PATH = "/hooks/twilio/recording"
# How long a recording callback waits for its call's activity (its final event queued).
RECORDING_WAIT_STEPS = 25
RECORDING_WAIT_STEP = 0.2
_MAX_TWILIO_BODY = 64 * 1024


def not_configured(what: str, key: str) -> web.Response:
    return json_error(404, "not_configured", f"{what} is not configured: set phone.{key}")


def payload_error(err: PayloadError) -> web.Response:
    code = "unknown_event" if err.status == 422 else "bad_request"
    return json_error(err.status, code, err.reason)


def bad_input(err: BadInput) -> web.Response:
    return json_error(err.status, err.code, err.detail)


async def generic_hook(ctx: PhoneContext, request: web.Request) -> web.Response:
    """POST /hooks/calls: one JSON call event signed with X-Leadbot-Signature."""
    key = ctx.webhook_key
    if key is None:
        return not_configured("the generic call webhook", "webhook_secret")
    try:
        # The shared reader's own shortcut, without a coroutine, for a body that came whole.
        body = whole_body(request, MAX_BODY)
        if body is None:
            body = await read_body(request, MAX_BODY)
    except BadInput as err:
        return bad_input(err)
    try:
        _, digest = check_generic(key, request.headers.get(GENERIC_HEADER), body, time.time())
    except SignatureError as err:
        return json_error(401, "bad_signature", err.reason)
    # A sender's retry of the very same signed body: known without parsing it again.
    known = ctx.bodies.get(digest)
    if known is not None and known[0] in ctx.recent:
        return web.Response(body=_reply_body("duplicate", known[1]), headers=_JSON)
    try:
        report, doc, text = read_call(body)
    except PayloadError as err:
        return payload_error(err)
    status, event = await ctx.enqueue_generic(report, doc, text)
    if status == "ignored":
        return web.json_response({"status": status, "reason": "internal call"})
    quoted = _encode(event)
    ctx.bodies.add(digest, event, quoted)
    return _reply(status, quoted)


_JSON = {"Content-Type": "application/json; charset=utf-8"}  # what web.json_response sends
_encode = msgspec.json.Encoder().encode


# The replies are built by hand: this runs for every call event, and json.dumps of the whole
# document costs several times the concatenation. The same JSON as json.dumps would give
# (msgspec writes non-ASCII characters as UTF-8, not as \u escapes).
def _reply_body(status: QueueStatus, quoted_event: bytes) -> bytes:
    return _REPLY_HEADS[status] + quoted_event + b"}"


_REPLY_HEADS: dict[QueueStatus, bytes] = {
    status: b'{"status": "%s", "event": ' % status.encode()
    for status in ("accepted", "duplicate", "ignored")
}


def _reply(status: QueueStatus, quoted_event: bytes) -> web.Response:
    code = 202 if status == "accepted" else 200
    return web.Response(body=_reply_body(status, quoted_event), status=code, headers=_JSON)


# --- Twilio -----------------------------------------------------------------------------------


def _public_prefix(ctx: PhoneContext) -> str:
    return (ctx.settings.twilio_public_url or ctx.host.settings.http.public_url).rstrip("/")


def twilio_public_url(ctx: PhoneContext, request: web.Request) -> str:
    """The URL Twilio called: the configured public prefix plus the path and query as sent."""
    return _public_prefix(ctx) + request.raw_path


async def _twilio_params(request: web.Request) -> MultiMapping[str] | web.Response:
    """The parameters Twilio sent: the form of a POST, the query of a GET."""
    if request.method == "GET":
        return request.query
    try:
        body = await read_body(request, _MAX_TWILIO_BODY)
    except BadInput as err:
        return bad_input(err)
    if request.content_type != "application/x-www-form-urlencoded":
        return json_error(415, "unsupported_media_type", "Twilio sends form-encoded bodies")
    # Read as aiohttp's request.post() reads such a form (which finds the stream drained).
    charset = request.charset or "utf-8"
    try:
        pairs = query_to_pairs(body.rstrip().decode(charset), max_fields=1000, encoding=charset)
    except (ValueError, LookupError) as exc:
        return json_error(400, "bad_request", f"the form body cannot be read: {str(exc)[:200]}")
    return MultiDictProxy(MultiDict(pairs))


async def _verified_twilio(
    ctx: PhoneContext, request: web.Request
) -> MultiMapping[str] | web.Response:
    """The parameters of a Twilio request whose signature holds; an error reply otherwise."""
    token = ctx.settings.twilio_auth_token
    if token is None:
        return not_configured("the Twilio webhook", "twilio_auth_token")
    params = await _twilio_params(request)
    if isinstance(params, web.Response):
        return params
    url = twilio_public_url(ctx, request)
    try:
        verify_twilio(
            token.get_secret_value(),
            url,
            params if request.method == "POST" else None,
            request.headers.get(TWILIO_HEADER),
            algorithm=algorithm_of(request.headers.get(SETTINGS_HEADER)),
        )
    except SignatureError as err:
        # The URL it was checked against: a wrong http.public_url (a changed port, a proxy's
        # https) shows at a glance, here and in the log line of the refusal.
        return json_error(401, "bad_signature", f"{err.reason}; checked against {url}")
    return params


async def _record_twilio(
    ctx: PhoneContext, params: MultiMapping[str]
) -> tuple[CallReport, QueueStatus] | web.Response:
    """Parse and queue one verified Twilio call request; an error reply when it is not
    valid."""
    try:
        # Cleaned after the signature check (which covers the values as sent).
        report = parse_twilio(MultiDict((clean_text(k), clean_text(v)) for k, v in params.items()))
    except PayloadError as err:
        return payload_error(err)
    status, _ = await ctx.enqueue(report)
    return report, status


async def _keep_recording(ctx: PhoneContext, call_id: str, url: str, *, wait: bool) -> bool:
    """Put a recording link on the call's activity once intake has recorded the call's final
    event (which rewrites the activity). With `wait`, that event may still be in the queue
    (the callback comes right after it): wait for it a moment, then take the activity as it
    is."""
    calls = ctx.host.crm.external_calls
    for _ in range(RECORDING_WAIT_STEPS if wait else 0):
        if await calls.recording_of_call(call_id, url) is not None:
            return True
        await asyncio.sleep(RECORDING_WAIT_STEP)
    return await calls.recording_of_call(call_id, url, after_final=False) is not None


def _twiml(xml: str) -> web.Response:
    return web.Response(text=xml, content_type="text/xml")


async def _dial_number(ctx: PhoneContext, report: CallReport) -> str | None:
    """Where to put the call through: the caller's responsible rep, if known and reachable."""
    if not ctx.settings.twilio_dial_responsible or report.from_number is None:
        return None
    e164 = ctx.normalize(report.from_number, ctx.line_region(report))
    if e164 is None:
        return None
    caller = await ctx.callers.caller(e164)
    rep = caller.responsible if caller else None
    return rep.phone if rep is not None and rep.active and rep.phone else None


async def twilio_voice(ctx: PhoneContext, request: web.Request) -> web.Response:
    """The voice URL: record the call, answer TwiML that puts it through."""
    params = await _verified_twilio(ctx, request)
    if isinstance(params, web.Response):
        return params
    checked = await _record_twilio(ctx, params)
    if isinstance(checked, web.Response):
        return checked
    report, _ = checked
    if report.direction is CallDirection.OUTGOING:
        # A rep's softphone (client: / sip:) dialling out: connect it to the number it dialled.
        # Any other outgoing leg already has its callee on the line: nothing to dial.
        softphone = is_endpoint_uri(params.get("From") or "")
        number = report.to_number if softphone else None
        return _twiml(twiml_response(number, None, None))
    return _twiml(
        twiml_response(
            await _dial_number(ctx, report),
            ctx.settings.twilio_fallback_number,
            None,
            # The <Dial> outcome says whether a rep answered: the only way to see a missed call.
            action_url=_public_prefix(ctx) + TWILIO_STATUS_PATH,
            reject=True,
        )
    )


async def twilio_status(ctx: PhoneContext, request: web.Request) -> web.Response:
    """Status callbacks, `<Dial action>` callbacks and recording status callbacks: record the
    stage (or the recording), then hang up."""
    params = await _verified_twilio(ctx, request)
    if isinstance(params, web.Response):
        return params
    if is_recording_callback(params):
        return await _recording(ctx, params)
    checked = await _record_twilio(ctx, params)
    if isinstance(checked, web.Response):
        return checked
    report, status = checked
    if report.recording_url and report.stage in (CallStage.ENDED, CallStage.MISSED):
        # A final event came already (the <Dial action> callback before the `completed`
        # status): this one is a duplicate for intake, so its link goes onto the call's
        # activity here. A first final event brings its link itself.
        await _keep_recording(ctx, report.call_id, report.recording_url, wait=status == "duplicate")
    return _twiml(twiml_response(None, None, None))


async def twilio_recording(ctx: PhoneContext, request: web.Request) -> web.Response:
    """The recording status callback URL (`RecordingStatusCallback`), also accepted at the
    status URL."""
    params = await _verified_twilio(ctx, request)
    if isinstance(params, web.Response):
        return params
    return await _recording(ctx, params)


async def _recording(ctx: PhoneContext, params: MultiMapping[str]) -> web.Response:
    try:
        recording = parse_recording(
            MultiDict((clean_text(k), clean_text(v)) for k, v in params.items())
        )
    except PayloadError as err:
        return payload_error(err)
    if recording is not None:
        kept = await _keep_recording(ctx, recording.call_id, recording.url, wait=True)
        if not kept:
            return json_error(404, "unknown_call", f"no call {recording.call_id[:60]!r} on record")
    return web.Response(status=204)
