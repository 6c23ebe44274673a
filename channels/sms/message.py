"""Twilio's incoming-message webhook parameters as an `InboundEvent`, sans-I/O.

Twilio posts a form (From, To, Body, MessageSid, NumMedia, MediaUrl0…, MediaContentType0…,
and more it may add at any time: unknown parameters are ignored). The message SID is the event's
external id, so a redelivered message is a duplicate for intake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

from matching.event import Attachment, Channel, InboundEvent

MAX_BODY = 1600  # Twilio's own limit for one message body
MAX_MEDIA = 10  # Twilio delivers at most ten media files per message
_SID = re.compile(r"^(SM|MM)[0-9A-Za-z]{1,64}$")
_NUMBER = re.compile(r"^\+?[0-9][0-9 ()./-]{2,30}$")


class SmsPayloadError(Exception):
    """The form is not an incoming SMS we can read; `reason` is fit for a 400 JSON body."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _required(params: Mapping[str, str], name: str) -> str:
    value = (params.get(name) or "").strip()
    if not value:
        raise SmsPayloadError(f"{name} is missing")
    return value


def _number(params: Mapping[str, str], name: str) -> str:
    value = _required(params, name)
    if not _NUMBER.match(value):
        # whatsapp:+49…, messenger:… and short codes with letters are not SMS from a phone.
        raise SmsPayloadError(f"{name} is not a phone number")
    return value


def _media(params: Mapping[str, str]) -> tuple[list[str], tuple[Attachment, ...]]:
    raw = (params.get("NumMedia") or "0").strip()
    if not raw.isdigit() or int(raw) > MAX_MEDIA:
        raise SmsPayloadError(f"NumMedia must be a number from 0 to {MAX_MEDIA}")
    urls, files = [], []
    for n in range(int(raw)):
        url = (params.get(f"MediaUrl{n}") or "").strip()
        if not url:
            continue
        kind = (params.get(f"MediaContentType{n}") or "application/octet-stream").strip()
        urls.append(url[:500])
        files.append(
            Attachment(
                name=url.rstrip("/").rsplit("/", 1)[-1][:200], content_type=kind[:100], size=0
            )
        )
    return urls, tuple(files)


def sms_event(
    params: Mapping[str, str], received_at: datetime, regions: Mapping[str, str]
) -> InboundEvent:
    """The event of one incoming message; `SmsPayloadError` when the form is not one."""
    sid = _required(params, "MessageSid")
    if not _SID.match(sid):
        raise SmsPayloadError("MessageSid is not a Twilio message SID")
    sender = _number(params, "From")
    ours = _number(params, "To")
    body = (params.get("Body") or "").strip()[:MAX_BODY]
    urls, files = _media(params)
    if not body and not files:
        body = "[empty message]"
    return InboundEvent(
        channel=Channel.SMS,
        external_id=sid,
        occurred_at=received_at,
        phones=(sender,),
        text=body or None,
        attachments=files,
        line=ours,
        phone_region=regions.get(ours),
        raw_ref=f"twilio:{sid}",
        meta={"message_sid": sid, "to": ours, **({"media_urls": urls} if urls else {})},
    )
