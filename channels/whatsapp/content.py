"""What one WhatsApp Cloud API message says: readable text, media metadata, extra facts.

Every message type becomes something a rep can read in Telegram; types this module does not
know still produce a placeholder so no customer message is silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from channels.event import Attachment, EventMeta

_MEDIA_TYPES = ("image", "video", "document", "audio", "voice", "sticker")
_MEDIA_LABELS = {"audio": "audio", "voice": "voice message", "sticker": "sticker"}
_REFERRAL_KEYS = ("source_url", "source_id", "source_type", "headline", "body", "ctwa_clid")


@dataclass(frozen=True, slots=True)
class MessageContent:
    message_type: str
    text: str
    attachments: tuple[Attachment, ...] = ()
    meta: EventMeta = field(default_factory=lambda: EventMeta())


def describe_message(message: dict[str, Any]) -> MessageContent:
    """Text, attachments and meta for one `messages[]` item (shape already checked by caller)."""
    kind = _str(message.get("type")) or "unknown"
    body = message.get(kind)
    part = body if isinstance(body, dict) else {}
    meta = _context_meta(message)
    if kind in _MEDIA_TYPES:
        return _media(kind, part, meta)
    if kind == "contacts":  # the one type whose payload is a list, not an object
        return MessageContent(kind, _contacts(body), meta=meta)
    describe = _DESCRIBERS.get(kind)
    if describe is None:
        return MessageContent(kind, f"[unsupported message type {kind[:40]}]", meta=meta)
    return MessageContent(kind, describe(part, meta) or f"[empty {kind} message]", meta=meta)


def _media(kind: str, part: dict[str, Any], meta: EventMeta) -> MessageContent:
    # Voice notes arrive as type "audio" with voice=true; report them as what the user sent.
    if kind == "audio" and part.get("voice") is True:
        kind = "voice"
    media_id = _str(part.get("id"))
    filename = _str(part.get("filename"))
    mime = _str(part.get("mime_type")) or "application/octet-stream"
    name = filename or f"{kind}-{media_id or 'unknown'}"
    sha256 = _str(part.get("sha256"))
    meta["media"] = [{"type": kind, "id": media_id, "mime_type": mime, "sha256": sha256}]
    label = _MEDIA_LABELS.get(kind, kind)
    caption = _str(part.get("caption"))
    text = caption or (f"[{label}: {filename}]" if filename else f"[{label}]")
    return MessageContent(kind, text, (Attachment(name, mime, 0),), meta)


def _text(part: dict[str, Any], meta: EventMeta) -> str | None:
    return _str(part.get("body"))


def _button(part: dict[str, Any], meta: EventMeta) -> str | None:
    if payload := _str(part.get("payload")):
        meta["button_payload"] = payload
    return _str(part.get("text"))


def _interactive(part: dict[str, Any], meta: EventMeta) -> str | None:
    reply_type = _str(part.get("type")) or ""
    reply = part.get(reply_type)
    if not isinstance(reply, dict):
        return None
    if reply_id := _str(reply.get("id")):
        meta["reply_id"] = reply_id
    if reply_type == "nfm_reply":  # a WhatsApp Flow answer: its JSON is kept for the CRM
        meta["flow_response"] = _str(reply.get("response_json"))
        return _str(reply.get("body")) or _str(reply.get("name"))
    return _join(" — ", _str(reply.get("title")), _str(reply.get("description")))


def _location(part: dict[str, Any], meta: EventMeta) -> str | None:
    lat, lon = part.get("latitude"), part.get("longitude")
    coords = f"({lat}, {lon})" if _is_number(lat) and _is_number(lon) else None
    place = _join(", ", _str(part.get("name")), _str(part.get("address")))
    details = _join(" ", place, coords, _str(part.get("url")))
    return f"Location: {details}" if details else "Location shared"


def _contacts(cards: object) -> str:
    # Shared cards describe somebody else, so their numbers never become the sender's phones.
    described = []
    for card in _dicts(cards):
        name = card.get("name")
        values = [_str(name.get("formatted_name")) if isinstance(name, dict) else None]
        values += [_str(p.get("phone")) for p in _dicts(card.get("phones"))]
        values += [_str(e.get("email")) for e in _dicts(card.get("emails"))]
        if text := _join(", ", *values):
            described.append(text)
    return "Shared contact: " + "; ".join(described) if described else "Shared contact"


def _reaction(part: dict[str, Any], meta: EventMeta) -> str | None:
    if target := _str(part.get("message_id")):
        meta["reacted_to"] = target
    emoji = _str(part.get("emoji"))
    return f"Reaction {emoji} to an earlier message" if emoji else "Reaction removed"


def _order(part: dict[str, Any], meta: EventMeta) -> str | None:
    items = part.get("product_items")
    count = len(items) if isinstance(items, list) else 0
    return _join(" ", f"[order with {count} item(s)]", _str(part.get("text")))


def _system(part: dict[str, Any], meta: EventMeta) -> str | None:
    return _str(part.get("body"))


_DESCRIBERS = {
    "text": _text,
    "button": _button,
    "interactive": _interactive,
    "location": _location,
    "reaction": _reaction,
    "order": _order,
    "system": _system,
}


def _context_meta(message: dict[str, Any]) -> EventMeta:
    meta: EventMeta = {}
    context = message.get("context")
    if isinstance(context, dict):
        if reply_to := _str(context.get("id")):
            meta["reply_to"] = reply_to
        if context.get("forwarded") is True or context.get("frequently_forwarded") is True:
            meta["forwarded"] = True
    referral = message.get("referral")  # click-to-WhatsApp ads: where the customer came from
    if isinstance(referral, dict):
        kept = {k: v for k in _REFERRAL_KEYS if (v := _str(referral.get(k)))}
        if kept:
            meta["referral"] = kept
    return meta


def _dicts(raw: object) -> list[dict[str, Any]]:
    return [item for item in raw if isinstance(item, dict)] if isinstance(raw, list) else []


def _str(raw: object) -> str | None:
    return raw.strip() or None if isinstance(raw, str) else None


def _is_number(raw: object) -> bool:
    return isinstance(raw, int | float) and not isinstance(raw, bool)


def _join(sep: str, *parts: str | None) -> str | None:
    return sep.join(p for p in parts if p) or None
