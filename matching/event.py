"""The one normalized inbound event every channel produces.

It lives in the innermost package so that `crm` (intake) and every channel can share it without
pointing a dependency outward; `channels.event` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from matching.channels import Channel
from matching.payloads import EventMeta, decode_meta

__all__ = [
    "Attachment",
    "Channel",
    "Direction",
    "EventMeta",
    "Handle",
    "InboundEvent",
    "RegisterMode",
]


class Direction(StrEnum):
    INCOMING = "incoming"
    OUTGOING = "outgoing"


class RegisterMode(StrEnum):
    """Per-event override of the decision table (Bitrix24 register modes)."""

    DEFAULT = "default"
    ONLY_UPDATE = "only_update"  # never create a lead / deal / contact
    ALWAYS_ADD = "always_add"  # always a new lead, even when something is open


@dataclass(frozen=True, slots=True)
class Handle:
    """A messenger identity: kind is "telegram" or "whatsapp", id the stable user id."""

    kind: str
    id: str
    username: str | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class InboundEvent:
    channel: Channel
    external_id: str  # unique per channel: Message-ID, call id, update id, form submission id
    occurred_at: datetime  # timezone-aware
    direction: Direction = Direction.INCOMING
    display_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    company_name: str | None = None
    phones: tuple[str, ...] = ()  # raw, as received
    emails: tuple[str, ...] = ()  # raw, as received
    handles: tuple[Handle, ...] = ()
    subject: str | None = None
    text: str | None = None
    attachments: tuple[Attachment, ...] = ()
    source: str | None = None  # CALL, EMAIL, WEBFORM, TELEGRAM, WHATSAPP, IMPORT, OTHER
    line: str | None = None  # mailbox, phone line or form key it came through
    phone_region: str | None = None  # default region of that line; falls back to the global one
    raw_ref: str | None = None  # where the raw input is kept (mailbox/uid, request id …)
    register_mode: RegisterMode = RegisterMode.DEFAULT
    # Phones found in free text (signatures, bodies): they may match, but never create a record.
    hint_phones: tuple[str, ...] = ()
    # Channel-specific facts (call duration, disposition, Message-ID threading, UTM, …): the
    # typed contract of matching.payloads.
    meta: EventMeta = field(default_factory=lambda: EventMeta())

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict; `from_json` restores the same event (used by queues and replay)."""
        return {
            # str() of a StrEnum member is its value, without `.value`'s property lookups.
            "channel": str(self.channel),
            "external_id": self.external_id,
            "occurred_at": self.occurred_at.isoformat(),
            "direction": str(self.direction),
            "display_name": self.display_name,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "company_name": self.company_name,
            "phones": list(self.phones),
            "emails": list(self.emails),
            "handles": [{"kind": h.kind, "id": h.id, "username": h.username} for h in self.handles],
            "subject": self.subject,
            "text": self.text,
            "attachments": [
                {"name": a.name, "content_type": a.content_type, "size": a.size}
                for a in self.attachments
            ],
            "source": self.source,
            "line": self.line,
            "phone_region": self.phone_region,
            "raw_ref": self.raw_ref,
            "register_mode": str(self.register_mode),
            "hint_phones": list(self.hint_phones),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InboundEvent:
        """Build an event from `to_json` output; raises ValueError/KeyError on bad input."""
        occurred = datetime.fromisoformat(str(data["occurred_at"]))
        if occurred.tzinfo is None:
            raise ValueError("occurred_at must carry a timezone")
        return cls(
            channel=Channel(data["channel"]),
            external_id=str(data["external_id"]),
            occurred_at=occurred,
            direction=Direction(data.get("direction", "incoming")),
            display_name=data.get("display_name"),
            first_name=data.get("first_name"),
            last_name=data.get("last_name"),
            company_name=data.get("company_name"),
            phones=tuple(str(p) for p in data.get("phones") or ()),
            emails=tuple(str(e) for e in data.get("emails") or ()),
            handles=tuple(
                Handle(kind=str(h["kind"]), id=str(h["id"]), username=h.get("username"))
                for h in data.get("handles") or ()
            ),
            subject=data.get("subject"),
            text=data.get("text"),
            attachments=tuple(
                Attachment(
                    name=str(a["name"]), content_type=str(a["content_type"]), size=int(a["size"])
                )
                for a in data.get("attachments") or ()
            ),
            source=data.get("source"),
            line=data.get("line"),
            phone_region=data.get("phone_region"),
            raw_ref=data.get("raw_ref"),
            register_mode=RegisterMode(data.get("register_mode", "default")),
            hint_phones=tuple(str(p) for p in data.get("hint_phones") or ()),
            meta=decode_meta(data.get("meta")),
        )
