"""WhatsApp Cloud API webhooks: subscription check, body signature, messages → events.

Pure functions; the HTTP route decides the status codes:
- GET: `verify_challenge` → 200 with the returned string as text/plain, `WhatsAppAuthError` → 403.
- POST: `verify_signature` over the *raw* body first (Meta escapes non-ASCII as \\uXXXX, so a
  re-serialised body would not match), `WhatsAppAuthError` → 401; then `parse_webhook`. Meta
  retries anything but a quick 200, so once the signature holds the route answers 200 and
  hands the events on; the same message id always yields the same `external_id`, which makes
  a redelivered message a no-op at intake.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from channels.event import Channel, EventMeta, Handle, InboundEvent
from channels.whatsapp.content import describe_message

SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_WA_ID = re.compile(r"[0-9]{5,15}")
# The challenge is echoed back verbatim; Meta sends a short number, so anything long or with
# control characters is not Meta and must not be reflected.
_MAX_CHALLENGE = 256


class WhatsAppError(ValueError):
    """Base of the errors below; `reason` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WhatsAppAuthError(WhatsAppError):
    """Verification failed (answer 403) or the signature did not hold (answer 401)."""


class WhatsAppPayloadError(WhatsAppError):
    """The signed body is not a WhatsApp webhook payload we understand."""


def verify_challenge(params: Mapping[str, str], verify_token: str) -> str:
    """The challenge to echo for a subscription check, or `WhatsAppAuthError`."""
    if not verify_token:
        raise WhatsAppAuthError("no verify token configured")
    if params.get("hub.mode") != "subscribe":
        raise WhatsAppAuthError("hub.mode is not 'subscribe'")
    given = params.get("hub.verify_token", "")
    if not hmac.compare_digest(given.encode(), verify_token.encode()):
        raise WhatsAppAuthError("hub.verify_token does not match")
    challenge = params.get("hub.challenge", "")
    if not challenge or len(challenge) > _MAX_CHALLENGE or not challenge.isprintable():
        raise WhatsAppAuthError("hub.challenge missing or malformed")
    return challenge


def verify_signature(app_secret: str, raw_body: bytes, header: str | None) -> None:
    """Check `X-Hub-Signature-256: sha256=<hex>` over the raw body; raise `WhatsAppAuthError`."""
    if not app_secret:
        raise WhatsAppAuthError("no app secret configured")
    if not header:
        raise WhatsAppAuthError(f"missing {SIGNATURE_HEADER} header")
    found = _SIGNATURE.fullmatch(header.strip())
    if found is None:
        raise WhatsAppAuthError(f"{SIGNATURE_HEADER} is not 'sha256=<64 hex digits>'")
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, found.group(1).lower()):
        raise WhatsAppAuthError("signature does not match the body")


def parse_webhook(raw_body: bytes) -> list[InboundEvent]:
    """Every customer message in the (possibly batched) payload, in order, once per message id.

    Delivery statuses and non-message fields are skipped. A body that is not JSON or does not
    have the webhook's shape raises `WhatsAppPayloadError`.
    """
    try:
        payload = json.loads(raw_body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
        raise WhatsAppPayloadError(f"body is not JSON: {exc}") from None
    root = _obj(payload, "body")
    if root.get("object", "whatsapp_business_account") != "whatsapp_business_account":
        raise WhatsAppPayloadError(f"object is {root.get('object')!r}, not a WhatsApp account")
    events: dict[str, InboundEvent] = {}
    for value in _message_values(root):
        for event in _value_events(value):
            events.setdefault(event.external_id, event)
    return list(events.values())


def _message_values(root: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for entry in _list(root.get("entry"), "entry"):
        for change in _list(_obj(entry, "entry[]").get("changes", []), "changes"):
            change = _obj(change, "changes[]")
            if change.get("field", "messages") == "messages":
                yield _obj(change.get("value"), "changes[].value")


def _value_events(value: dict[str, Any]) -> Iterator[InboundEvent]:
    metadata = _obj(value.get("metadata", {}), "metadata")
    phone_number_id = _opt_str(metadata.get("phone_number_id"))
    display_phone = _opt_str(metadata.get("display_phone_number"))
    messages = [_obj(m, "messages[]") for m in _list(value.get("messages", []), "messages")]
    senders = {_wa_id(m.get("from")) for m in messages}
    names = _profile_names(_list(value.get("contacts", []), "contacts"), senders)
    for message in messages:
        wa_id = _wa_id(message.get("from"))
        message_id = message.get("id")
        if not isinstance(message_id, str) or not message_id:
            raise WhatsAppPayloadError("message without an id")
        content = describe_message(message)
        meta: EventMeta = {
            "wa_message_type": content.message_type,
            "phone_number_id": phone_number_id,
            "display_phone_number": display_phone,
            **content.meta,
        }
        yield InboundEvent(
            channel=Channel.WHATSAPP,
            external_id=message_id,
            occurred_at=_timestamp(message.get("timestamp")),
            display_name=names.get(wa_id),
            phones=("+" + wa_id,),
            handles=(Handle("whatsapp", wa_id),),
            text=content.text,
            attachments=content.attachments,
            source="WHATSAPP",
            line=phone_number_id,
            meta=meta,
        )


def _profile_names(contacts: list[Any], senders: set[str]) -> dict[str, str]:
    """wa_id → profile name; a lone unmatched contact belongs to the lone sender.

    Meta may report a `wa_id` that differs from `from` (e.g. Brazilian mobile numbers without
    the extra 9), so an exact match is tried first.
    """
    names: dict[str, str] = {}
    unmatched: list[str] = []
    for contact in contacts:
        if not isinstance(contact, dict):
            continue
        profile = contact.get("profile")
        name = _opt_str(profile.get("name")) if isinstance(profile, dict) else None
        if not name:
            continue
        wa_id = contact.get("wa_id")
        if isinstance(wa_id, str) and wa_id in senders:
            names[wa_id] = name
        else:
            unmatched.append(name)
    if len(unmatched) == 1 and len(contacts) == 1 and len(senders) == 1:
        names.setdefault(next(iter(senders)), unmatched[0])
    return names


def _wa_id(raw: object) -> str:
    if not isinstance(raw, str) or _WA_ID.fullmatch(raw) is None:
        raise WhatsAppPayloadError(f"sender {raw!r} is not a WhatsApp id (5-15 digits)")
    return raw


def _timestamp(raw: object) -> datetime:
    try:
        seconds = int(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else None
        if seconds is None:
            raise ValueError
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        raise WhatsAppPayloadError(f"timestamp {raw!r} is not unix seconds") from None


def _obj(raw: object, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise WhatsAppPayloadError(f"{where} is not an object")
    return raw


def _list(raw: object, where: str) -> list[Any]:
    if not isinstance(raw, list):
        raise WhatsAppPayloadError(f"{where} is not a list")
    return raw


def _opt_str(raw: object) -> str | None:
    return raw if isinstance(raw, str) and raw else None
