"""Our own call webhook (`POST /hooks/calls`): a small JSON document per call stage.

Schema (one JSON object; unknown keys are ignored so senders can add fields):

    event            required  "call.ringing" | "call.answered" | "call.ended" | "call.missed"
    call_id          required  string (or integer), 1-200 characters, the same for every stage
    direction        required  "incoming" | "outgoing" ("inbound" / "outbound" also accepted)
    from, to         optional  string or null: E.164 preferred; anything else is kept raw;
                               null, "" or "anonymous" means withheld
    line             optional  string: the line / DID the call came through
    agent_extension  optional  string or integer
    timestamp        optional  when this stage happened
    started_at       optional  when the call started ringing
    answered_at      optional  accepted for symmetry, currently unused
    ended_at         optional  when the call ended
                     (all times: ISO-8601 with a timezone, or unix seconds as a number)
    duration         optional  integer seconds >= 0 of conversation
    disposition      optional  "answered" | "missed" | "busy" | "declined" | "failed" |
                               "cancelled"; defaults for call.ended to answered when duration
                               > 0, else missed; for call.missed to missed
    recording_url    optional  http(s) URL
    caller_name      optional  string

Errors: `PayloadError(400)` for anything malformed, `PayloadError(422)` for an event name we do
not know (the document is fine, we just have nothing to do with it).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

from channels.phone.calls import (
    CallDirection,
    CallReport,
    CallStage,
    Disposition,
    PayloadError,
    final_stage,
    is_http_url,
)
from matching.text import clean_json, is_clean_json

MAX_BODY = 64 * 1024
_MAX_TEXT = 2000
_MAX_CALL_ID = 200
# Unix seconds between 1970 and 9999 keep datetime.fromtimestamp from overflowing.
_MAX_UNIX = 253_402_300_799

_EVENTS = {
    "call.ringing": CallStage.RINGING,
    "call.answered": CallStage.ANSWERED,
    "call.ended": CallStage.ENDED,
    "call.missed": CallStage.MISSED,
}
_DIRECTIONS = {
    "incoming": CallDirection.INCOMING,
    "inbound": CallDirection.INCOMING,
    "outgoing": CallDirection.OUTGOING,
    "outbound": CallDirection.OUTGOING,
}


# Bound once: on Python 3.11 `CallStage.X` passes through the enum type's __getattr__, and
# these are asked on every call webhook request.
_OPEN_STAGES = frozenset({CallStage.RINGING, CallStage.ANSWERED})  # the call is not over
_MISSED = CallStage.MISSED
_ANSWERED = Disposition.ANSWERED


def _bad(reason: str) -> PayloadError:
    return PayloadError(400, reason)


def _text(
    doc: dict[str, Any], key: str, *, max_len: int = _MAX_TEXT, numbers: bool = False
) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if numbers and isinstance(value, int) and not isinstance(value, bool):  # ids, extensions
        value = str(value)
    if not isinstance(value, str):
        raise _bad(f"{key} must be a string")
    if len(value) > max_len:
        raise _bad(f"{key} is longer than {max_len} characters")
    return value.strip() or None


def _time(doc: dict[str, Any], key: str) -> datetime | None:
    return _time_value(key, doc.get(key))


def _time_value(key: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or not 0 <= value <= _MAX_UNIX:
            raise _bad(f"{key} is not a plausible unix time")
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str) or len(value) > 64:
        raise _bad(f"{key} must be an ISO-8601 string or unix seconds")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _bad(f"{key} is not ISO-8601") from None
    if parsed.tzinfo is None:
        raise _bad(f"{key} needs a timezone (e.g. Z or +01:00)")
    return parsed


def _duration(doc: dict[str, Any]) -> int | None:
    return _duration_value(doc.get("duration"))


def _duration_value(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10**7:
        raise _bad("duration must be whole seconds >= 0")
    return value


def _url(doc: dict[str, Any], key: str) -> str | None:
    value = _text(doc, key)
    if value is not None and not is_http_url(value):
        raise _bad(f"{key} must be an http(s) URL")
    return value


def _disposition(doc: dict[str, Any], stage: CallStage, duration: int | None) -> Disposition | None:
    return _disposition_of(_text(doc, "disposition"), stage, duration)


def _disposition_of(name: str | None, stage: CallStage, duration: int | None) -> Disposition | None:
    if stage in _OPEN_STAGES:
        return None  # the call is not over yet: an outcome would be a guess
    if name is not None:
        try:
            return Disposition(name.lower())
        except ValueError:
            allowed = ", ".join(d.value for d in Disposition)
            raise _bad(f"disposition must be one of {allowed}") from None
    if stage is CallStage.MISSED:
        return Disposition.MISSED
    return Disposition.ANSWERED if duration else Disposition.MISSED


# A UTF-8 JSON object parsed in one C pass. What it refuses (another encoding, NaN, a number
# out of its range, a lone surrogate escape, not an object …) goes to the json module, which
# accepts what it always did and words the refusals.
_DECODE = msgspec.json.Decoder(dict[str, Any]).decode


def generic_document(body: bytes) -> dict[str, Any]:
    """The JSON object of a `/hooks/calls` body; raises PayloadError (400)."""
    return read_generic(body)[0]


def read_generic(body: bytes) -> tuple[dict[str, Any], bool]:
    """`generic_document`, and whether the body is that document's UTF-8 JSON text."""
    if len(body) > MAX_BODY:
        raise _bad(f"body larger than {MAX_BODY} bytes")
    try:
        return _DECODE(body), True
    except msgspec.DecodeError:
        pass
    except RecursionError:  # nested deeper than msgspec reads: the json module would not either
        raise _bad("body is not valid JSON") from None
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise _bad("body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _bad("body must be a JSON object")
    return doc, json.detect_encoding(body) == "utf-8"


def read_call(body: bytes) -> tuple[CallReport, dict[str, Any] | None, bytes | None]:
    """What the webhook queues for a `/hooks/calls` body: its call report, its document
    (cleaned: `matching.text.clean_json`) and the document's JSON text when the body as it
    came is that (UTF-8, nothing cleaned). The usual body is read once, into the report
    (`usual_report`): the document is then None, to be decoded from the text when it is needed
    (`RawInput.document`). Raises PayloadError (400 / 422)."""
    # Cleaned before it is validated: a call_id of control characters alone is no id. A body
    # whose bytes show nothing to clean skips the walk over the document.
    if len(body) <= MAX_BODY and is_clean_json(body) and _is_utf8(body):
        report = usual_report(body)
        if report is not None:
            return report, None, body
    received, utf8 = read_generic(body)
    doc = received if utf8 and is_clean_json(body) else clean_json(received)
    # The body as it came is the document's JSON when it is UTF-8 (json also reads UTF-16/32)
    # and cleaning changed nothing.
    return generic_report(doc), doc, body if utf8 and doc is received else None


def _is_utf8(body: bytes) -> bool:
    # msgspec checks the UTF-8 of the strings it keeps, not of those it skips.
    if body.isascii():
        return True
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def parse_generic(body: bytes) -> CallReport:
    """The call report in a `/hooks/calls` body; raises PayloadError (400 / 422)."""
    return generic_report(generic_document(body))


def generic_report(doc: dict[str, Any]) -> CallReport:
    """The call report in a `/hooks/calls` document; raises PayloadError (400 / 422)."""
    event = _text(doc, "event")
    if event is None:
        raise _bad("event is required")
    if event not in _EVENTS:
        raise PayloadError(422, f"unknown event {event[:64]!r}")
    call_id = _text(doc, "call_id", max_len=_MAX_CALL_ID, numbers=True)
    if call_id is None:
        raise _bad("call_id is required")
    direction_name = _text(doc, "direction")
    direction = _DIRECTIONS.get((direction_name or "").lower())
    if direction is None:
        raise _bad("direction must be incoming or outgoing")
    _time(doc, "answered_at")  # validated so a bad value is reported, not silently dropped
    duration = _duration(doc)
    stage = _EVENTS[event]
    disposition = _disposition(doc, stage, duration)
    if stage is CallStage.MISSED and disposition is Disposition.ANSWERED:
        raise _bad("call.missed cannot have disposition answered")
    if disposition is not None:
        stage = final_stage(direction, disposition)
    return CallReport(
        call_id=call_id,
        stage=stage,
        direction=direction,
        from_number=_text(doc, "from"),
        to_number=_text(doc, "to"),
        line=_text(doc, "line"),
        agent_extension=_text(doc, "agent_extension", numbers=True),
        started_at=_time(doc, "started_at"),
        ended_at=_time(doc, "ended_at"),
        duration=duration,
        disposition=disposition,
        recording_url=_url(doc, "recording_url"),
        caller_name=_text(doc, "caller_name"),
        occurred_at=_time(doc, "timestamp"),
    )


# --- the usual document, read in one C pass ------------------------------------------------

_Text = Annotated[str, msgspec.Meta(max_length=_MAX_TEXT)]
_Time = str | int | float | None


class _Usual(msgspec.Struct):
    """A `/hooks/calls` document whose keys have the types `generic_report` accepts (msgspec
    checks them, and the lengths, as it reads the body). Unknown keys are ignored, as there."""

    event: _Text
    call_id: Annotated[str, msgspec.Meta(max_length=_MAX_CALL_ID)] | int
    direction: _Text
    from_: _Text | None = msgspec.field(name="from", default=None)
    to: _Text | None = None
    line: _Text | None = None
    agent_extension: _Text | int | None = None
    caller_name: _Text | None = None
    recording_url: _Text | None = None
    disposition: _Text | None = None
    duration: int | float | None = None
    timestamp: _Time = None
    started_at: _Time = None
    answered_at: _Time = None
    ended_at: _Time = None


_DECODE_USUAL = msgspec.json.Decoder(_Usual).decode


def usual_report(body: bytes) -> CallReport | None:
    """`generic_report` of the body's document when the body is UTF-8 JSON of the usual shape
    and every value passes; None for anything else (`generic_report` then says what is
    wrong). Only for a body `matching.text.is_clean_json` finds clean: it reads the text as
    it is, uncleaned."""
    try:
        doc = _DECODE_USUAL(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    stage = _EVENTS.get(doc.event.strip())
    direction = _DIRECTIONS.get(doc.direction.strip().lower())
    call_id = doc.call_id if isinstance(doc.call_id, str) else str(doc.call_id)
    call_id = call_id.strip()
    if stage is None or direction is None or not call_id or len(call_id) > _MAX_CALL_ID:
        return None
    try:
        return _usual_report(doc, stage, direction, call_id)
    except PayloadError:
        return None


def _stripped(value: str | None) -> str | None:
    return None if value is None else (value.strip() or None)


def _usual_report(
    doc: _Usual, stage: CallStage, direction: CallDirection, call_id: str
) -> CallReport | None:
    # The checks of generic_report on values already typed; the keys a document leaves out
    # cost nothing.
    if doc.answered_at is not None:
        _time_value("answered_at", doc.answered_at)
    duration = None if doc.duration is None else _duration_value(doc.duration)
    name = _stripped(doc.disposition)
    disposition = _disposition_of(name, stage, duration)
    if stage is _MISSED and disposition is _ANSWERED:
        return None
    if disposition is not None:
        stage = final_stage(direction, disposition)
    extension = doc.agent_extension
    if isinstance(extension, int):
        extension = str(extension)
        if len(extension) > _MAX_TEXT:
            return None
    url = _stripped(doc.recording_url)
    if url is not None and not is_http_url(url):
        return None
    return CallReport(
        call_id=call_id,
        stage=stage,
        direction=direction,
        from_number=_stripped(doc.from_),
        to_number=_stripped(doc.to),
        line=_stripped(doc.line),
        agent_extension=_stripped(extension),
        started_at=None if doc.started_at is None else _time_value("started_at", doc.started_at),
        ended_at=None if doc.ended_at is None else _time_value("ended_at", doc.ended_at),
        duration=duration,
        disposition=disposition,
        recording_url=url,
        caller_name=_stripped(doc.caller_name),
        occurred_at=None if doc.timestamp is None else _time_value("timestamp", doc.timestamp),
    )
