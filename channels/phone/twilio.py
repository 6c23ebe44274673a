"""Twilio-compatible voice webhooks: the form parameters of the voice request and of status /
`<Dial action>` callbacks as a `CallReport`, and the TwiML we answer the voice request with.

Mapping decisions:
- `CallStatus` queued / initiated / ringing → ringing; in-progress → answered; completed →
  finished and answered (Twilio only says "completed" for a call that was picked up);
  busy / no-answer / canceled / failed → finished with disposition busy / missed / cancelled /
  failed (stage "missed" for incoming calls, "ended" for outgoing ones).
- A `<Dial action>` callback carries `DialCallStatus`: whether the *rep* answered decides the
  outcome there (an inbound call is "answered" by Twilio itself as soon as TwiML runs), and
  `DialCallDuration` is the conversation time.
- `Direction` inbound → incoming; outbound-api / outbound-dial → outgoing. A call *from* a
  `client:` / `sip:` endpoint to a phone number is one of our reps calling out (outgoing, the
  endpoint user is the agent extension); a call to such an endpoint names the agent too. A call
  between two endpoints stays as it is and `call_to_event` drops it as internal.
- `anonymous`, empty and Twilio's keypad spellings of ANONYMOUS / RESTRICTED / UNAVAILABLE /
  UNKNOWN mean a withheld number (None).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from xml.etree import ElementTree

from channels.phone.calls import (
    CallDirection,
    CallReport,
    CallStage,
    Disposition,
    PayloadError,
    final_stage,
    is_endpoint_uri,
    is_http_url,
)

_MAX_VALUE = 2000
_RINGING = frozenset({"queued", "initiated", "ringing"})
_FINAL = {
    "completed": Disposition.ANSWERED,
    "answered": Disposition.ANSWERED,  # DialCallStatus only
    "busy": Disposition.BUSY,
    "no-answer": Disposition.MISSED,
    "canceled": Disposition.CANCELLED,
    "failed": Disposition.FAILED,
}
_DIRECTIONS = {
    "inbound": CallDirection.INCOMING,
    "outbound-api": CallDirection.OUTGOING,
    "outbound-dial": CallDirection.OUTGOING,
}
# What Twilio puts in From when the caller id is hidden: the word, or it spelled on a keypad.
_WITHHELD = frozenset({"", "anonymous", "+266696687", "+7378742833", "+86282452253", "+8656696"})
# Characters XML 1.0 cannot carry at all, even escaped.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _get(params: Mapping[str, str], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or not str(value).strip():
        if required:
            raise PayloadError(400, f"{name} is required")
        return None
    text = str(value).strip()
    if len(text) > _MAX_VALUE:
        raise PayloadError(400, f"{name} is longer than {_MAX_VALUE} characters")
    return text


def _number(params: Mapping[str, str], name: str) -> str | None:
    value = _get(params, name)
    if value is None or value.lower() in _WITHHELD:
        return None
    return value


def _seconds(params: Mapping[str, str], name: str) -> int | None:
    value = _get(params, name)
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 8:
        raise PayloadError(400, f"{name} must be whole seconds")
    return int(value)


def _timestamp(params: Mapping[str, str]) -> datetime | None:
    value = _get(params, "Timestamp")
    if value is None:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise PayloadError(400, "Timestamp is not an RFC 2822 date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _endpoint_user(address: str | None) -> str | None:
    """`client:alice` → alice, `sip:101@pbx.example` → 101."""
    if address is None or not is_endpoint_uri(address):
        return None
    user = address.split(":", 1)[1].split("@", 1)[0].split(";", 1)[0]
    return user or None


def _outcome(params: Mapping[str, str]) -> tuple[str, Disposition | None, int | None]:
    """The status that decides the stage, its disposition and the talk time."""
    dial_status = _get(params, "DialCallStatus")
    if dial_status is not None:
        status, duration = dial_status.lower(), _seconds(params, "DialCallDuration")
    else:
        status = (_get(params, "CallStatus", required=True) or "").lower()
        duration = _seconds(params, "CallDuration")
    if status in _RINGING or status == "in-progress":
        return status, None, duration
    if status not in _FINAL:
        raise PayloadError(422, f"unknown call status {status[:40]!r}")
    return status, _FINAL[status], duration


def parse_twilio(params: Mapping[str, str]) -> CallReport:
    """The call report in a Twilio voice request or status callback; raises PayloadError.

    `params` is the form (or query) as a mapping; for a multidict the first value counts.
    """
    call_sid = _get(params, "CallSid", required=True) or ""
    if len(call_sid) > 200:
        raise PayloadError(400, "CallSid is too long")
    direction_name = (_get(params, "Direction", required=True) or "").lower()
    direction = _DIRECTIONS.get(direction_name)
    if direction is None:
        raise PayloadError(400, f"unknown Direction {direction_name[:40]!r}")
    status, disposition, duration = _outcome(params)
    from_number, to_number = _number(params, "From"), _number(params, "To")
    from_user, to_user = _endpoint_user(from_number), _endpoint_user(to_number)
    if from_user and not to_user:
        direction = CallDirection.OUTGOING  # a rep's softphone dialling out
    if disposition is not None:
        stage = final_stage(direction, disposition)
    else:
        stage = CallStage.RINGING if status in _RINGING else CallStage.ANSWERED
    incoming = direction is CallDirection.INCOMING
    recording = _get(params, "RecordingUrl")
    if recording is not None and not is_http_url(recording):
        raise PayloadError(400, "RecordingUrl must be an http(s) URL")
    occurred = _timestamp(params)
    return CallReport(
        call_id=call_sid,
        stage=stage,
        direction=direction,
        from_number=from_number,
        to_number=to_number,
        line=to_number if incoming else from_number,
        agent_extension=to_user if incoming else from_user,
        ended_at=occurred if disposition is not None else None,
        duration=duration,
        disposition=disposition,
        recording_url=recording,
        caller_name=_get(params, "CallerName"),
        occurred_at=occurred,
    )


@dataclass(frozen=True, slots=True)
class Recording:
    call_id: str
    url: str


def is_recording_callback(params: Mapping[str, str]) -> bool:
    """Twilio's RecordingStatusCallback: a recording's sid and status, no call status."""
    return (
        bool(params.get("RecordingSid"))
        and "RecordingStatus" in params
        and not params.get("CallStatus")
        and not params.get("DialCallStatus")
    )


def parse_recording(params: Mapping[str, str]) -> Recording | None:
    """A RecordingStatusCallback: the call and its recording's URL once the recording is
    `completed` (None for in-progress, absent, failed)."""
    call_sid = _get(params, "CallSid", required=True) or ""
    if len(call_sid) > 200:
        raise PayloadError(400, "CallSid is too long")
    status = (_get(params, "RecordingStatus") or "").lower()
    if status != "completed":
        return None
    url = _get(params, "RecordingUrl", required=True) or ""
    if not is_http_url(url):
        raise PayloadError(400, "RecordingUrl must be an http(s) URL")
    return Recording(call_sid, url)


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("", text)


def twiml_response(
    dial_number: str | None,
    fallback_number: str | None,
    say: str | None,
    *,
    timeout: int | None = None,
    action_url: str | None = None,
    reject: bool = False,
) -> str:
    """TwiML for the voice request: an optional `<Say>`, then `<Dial>` to the rep's number
    (known caller) or else the fallback number; with neither, Twilio hangs up after the Say,
    or, with `reject`, refuses the call (so it ends busy / unanswered, not "completed").

    The numbers come from our CRM / settings; they are escaped, not validated, here.
    """
    response = ElementTree.Element("Response")
    if say:
        ElementTree.SubElement(response, "Say").text = _xml_text(say)
    number = dial_number or fallback_number
    if number:
        dial = ElementTree.SubElement(response, "Dial")
        if timeout is not None:
            dial.set("timeout", str(timeout))
        if action_url:
            dial.set("action", _xml_text(action_url))
        ElementTree.SubElement(dial, "Number").text = _xml_text(number)
    elif reject:
        ElementTree.SubElement(response, "Reject")
    body = ElementTree.tostring(response, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>' + body
