"""WhatsApp Cloud API webhooks: subscription check, body signature, messages → events.

Pure functions; the HTTP route decides the status codes:
- GET: `verify_challenge` → 200 with the returned string as text/plain, `WhatsAppAuthError` → 403.
- POST: `verify_signature` over the *raw* body first (Meta escapes non-ASCII as \\uXXXX, so a
  re-serialised body would not match), `WhatsAppAuthError` → 401; then `parse_webhook`. Meta
  retries anything but a quick 200, so once the signature holds the route answers 200 and
  hands the events on; the same message id always yields the same `external_id`, which makes
  a redelivered message a no-op at intake. Each message is read on its own: one that cannot
  be read is returned as `Rejected` (the route logs and counts it) and never costs the others.
- Senders: `from` (the phone number as a WhatsApp id) is left out for users who adopted a
  username; the business-scoped user id (`from_user_id`, BSUID) is in every 2026 payload. Both
  become WhatsApp identities, so a person first seen by BSUID is found again when a later
  message also gives the number.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from channels.event import Channel, EventMeta, Handle, InboundEvent
from channels.whatsapp.content import describe_message

SIGNATURE_HEADER = "X-Hub-Signature-256"
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_WA_ID = re.compile(r"[0-9]{5,15}")
# A business-scoped user id: the user's ISO country code, a dot, up to 128 letters and digits
# ("US.13491208655302741918"); a parent BSUID has "ENT." after the country code.
_BSUID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[0-9A-Za-z]{1,128}")
_MAX_USERNAME = 100  # the column that keeps it (a communication's label)
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


@dataclass(frozen=True, slots=True)
class Rejected:
    """One item of a delivery that could not become an event, and why (safe to log)."""

    where: str  # e.g. "entry[0].changes[1].value.messages[2]"
    reason: str
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookBatch:
    """What one signed delivery holds: the events (in order, once per id) and the rest."""

    events: list[InboundEvent]
    rejected: list[Rejected]


def parse_webhook(raw_body: bytes) -> WebhookBatch:
    """Every customer message in the (possibly batched) payload, each on its own.

    Delivery statuses and non-message fields are skipped. A message (or an entry, change or
    value) that cannot be read is listed in `rejected` and never keeps the others from being
    read. Only a body that is not JSON or not a WhatsApp webhook at all raises
    `WhatsAppPayloadError`.
    """
    try:
        payload = json.loads(raw_body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
        raise WhatsAppPayloadError(f"body is not JSON: {exc}") from None
    root = _obj(payload, "body")
    if root.get("object", "whatsapp_business_account") != "whatsapp_business_account":
        raise WhatsAppPayloadError(f"object is {root.get('object')!r}, not a WhatsApp account")
    events: dict[str, InboundEvent] = {}
    rejected: list[Rejected] = []
    for where, value in _message_values(root, rejected):
        for item in _value_events(where, value):
            if isinstance(item, Rejected):
                rejected.append(item)
            else:
                events.setdefault(item.external_id, item)
    return WebhookBatch(list(events.values()), rejected)


def _message_values(
    root: dict[str, Any], rejected: list[Rejected]
) -> Iterator[tuple[str, dict[str, Any]]]:
    for e, entry in enumerate(_list(root.get("entry"), "entry")):
        try:
            changes = _list(_obj(entry, "entry").get("changes", []), "changes")
        except WhatsAppPayloadError as err:
            rejected.append(Rejected(f"entry[{e}]", err.reason))
            continue
        for c, change in enumerate(changes):
            where = f"entry[{e}].changes[{c}]"
            try:
                change = _obj(change, "change")
                if change.get("field", "messages") == "messages":
                    yield f"{where}.value", _obj(change.get("value"), "value")
            except WhatsAppPayloadError as err:
                rejected.append(Rejected(where, err.reason))


def _value_events(where: str, value: dict[str, Any]) -> Iterator[InboundEvent | Rejected]:
    try:
        metadata = _obj(value.get("metadata", {}), "metadata")
        raw_messages = _list(value.get("messages", []), "messages")
        contacts = _list(value.get("contacts", []), "contacts")
    except WhatsAppPayloadError as err:
        yield Rejected(where, err.reason)
        return
    phone_number_id = _opt_str(metadata.get("phone_number_id"))
    display_phone = _opt_str(metadata.get("display_phone_number"))
    senders = [_sender_keys(m) for m in raw_messages if isinstance(m, dict)]
    profiles = _profiles(contacts, senders)
    for index, message in enumerate(raw_messages):
        at = f"{where}.messages[{index}]"
        message_id = message.get("id") if isinstance(message, dict) else None
        message_id = message_id if isinstance(message_id, str) and message_id else None
        try:
            yield _event(_obj(message, "message"), profiles, phone_number_id, display_phone)
        except WhatsAppPayloadError as err:
            yield Rejected(at, err.reason, message_id)


def _event(
    message: dict[str, Any],
    profiles: list[_Profile],
    phone_number_id: str | None,
    display_phone: str | None,
) -> InboundEvent:
    wa_id, user_id = _sender_keys(message)
    if message.get("from") is None and message.get("from_user_id") is None:
        raise WhatsAppPayloadError("no sender: neither from nor from_user_id")
    if wa_id is None and user_id is None:
        raise WhatsAppPayloadError(
            f"sender {_short(message.get('from'))} / {_short(message.get('from_user_id'))} is "
            "neither a WhatsApp id (5-15 digits) nor a business-scoped user id (CC.<id>)"
        )
    message_id = message.get("id")
    if not isinstance(message_id, str) or not message_id:
        raise WhatsAppPayloadError("message without an id")
    occurred_at = _timestamp(message.get("timestamp"))
    profile = _profile_of(profiles, wa_id, user_id)
    # The contact entry may know the number the message leaves out (or the other way round).
    wa_id = wa_id or profile.wa_id
    user_id = user_id or profile.user_id
    handles = []
    if wa_id:
        handles.append(Handle("whatsapp", wa_id))
    if user_id:  # stays the same when the user hides the number behind a username
        handles.append(Handle("whatsapp", user_id, profile.username))
    content = describe_message(message)
    meta: EventMeta = {
        "wa_message_type": content.message_type,
        "phone_number_id": phone_number_id,
        "display_phone_number": display_phone,
        # Who wrote, as the Cloud API addresses them: a reply goes back the same way.
        "wa_id": wa_id,
        "user_id": user_id,
        **content.meta,
    }
    return InboundEvent(
        channel=Channel.WHATSAPP,
        external_id=message_id,
        occurred_at=occurred_at,
        display_name=profile.name or (f"@{profile.username}" if profile.username else None),
        phones=("+" + wa_id,) if wa_id else (),
        handles=tuple(handles),
        text=content.text,
        attachments=content.attachments,
        source="WHATSAPP",
        line=phone_number_id,
        meta=meta,
    )


@dataclass(frozen=True, slots=True)
class _Profile:
    """One `contacts[]` entry: who sent the messages of this value."""

    name: str | None = None
    username: str | None = None
    wa_id: str | None = None
    user_id: str | None = None


def _profiles(contacts: list[Any], senders: list[tuple[str | None, str | None]]) -> list[_Profile]:
    """The readable contact entries; a lone entry that matches no sender belongs to the lone
    sender (Meta may report a `wa_id` that differs from `from`, e.g. Brazilian mobile numbers
    without the extra 9), so exact matches are tried first (`_profile_of`)."""
    profiles = []
    for contact in contacts:
        if not isinstance(contact, dict):
            continue
        raw = contact.get("profile")
        profile = raw if isinstance(raw, dict) else {}
        profiles.append(
            _Profile(
                name=_opt_str(profile.get("name")),
                username=_username(profile.get("username")),
                wa_id=_wa_id(contact.get("wa_id")),
                user_id=_user_id(contact.get("user_id")),
            )
        )
    if len(profiles) == 1 and len(contacts) == 1 and len(set(senders)) == 1:
        lone = profiles[0]
        wa_id, user_id = senders[0]
        if not _same(lone, wa_id, user_id) and (wa_id or user_id):
            # Meta's own wa_id spelling is not the sender's: keep its name, not its number.
            profiles = [_Profile(lone.name, lone.username, wa_id, user_id or lone.user_id)]
    return profiles


def _profile_of(profiles: list[_Profile], wa_id: str | None, user_id: str | None) -> _Profile:
    return next((p for p in profiles if _same(p, wa_id, user_id)), _Profile())


def _same(profile: _Profile, wa_id: str | None, user_id: str | None) -> bool:
    return bool((user_id and profile.user_id == user_id) or (wa_id and profile.wa_id == wa_id))


def _sender_keys(message: dict[str, Any]) -> tuple[str | None, str | None]:
    """(`from` as a WhatsApp id, `from_user_id` as a business-scoped user id), each or None.

    Users who adopted a username may come without `from`; every 2026 payload has the BSUID.
    """
    return _wa_id(message.get("from")), _user_id(message.get("from_user_id"))


def _wa_id(raw: object) -> str | None:
    return raw if isinstance(raw, str) and _WA_ID.fullmatch(raw) else None


def _user_id(raw: object) -> str | None:
    return raw if isinstance(raw, str) and _BSUID.fullmatch(raw) else None


def _username(raw: object) -> str | None:
    name = _opt_str(raw)
    return name.removeprefix("@")[:_MAX_USERNAME] if name else None


def _timestamp(raw: object) -> datetime:
    try:
        seconds = int(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else None
        if seconds is None:
            raise ValueError
        return datetime.fromtimestamp(seconds, UTC)
    except (ValueError, OverflowError, OSError):
        raise WhatsAppPayloadError(f"timestamp {_short(raw)} is not unix seconds") from None


def _short(raw: object) -> str:
    """A received value for a log line: its repr, cut short (it is untrusted input)."""
    text = repr(raw)
    return text if len(text) <= 40 else text[:39] + "…"


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
