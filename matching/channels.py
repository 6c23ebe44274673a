"""The channel registry: every inbound channel declared once.

One `ChannelSpec` per `Channel` says everything the rest of the code needs to know about a
channel: the activity kind and source code its events leave on records, how a new record made
from it is titled, the messenger handle kind its events carry, where a rep's reply to it goes and
the word `/leads` filters it by. Intake, identities and the rep bot read this table instead of
keeping their own, so adding a channel is a new `Channel` member and one entry here
(tests/matching/test_channels.py fails when a channel has none or a consumer misses one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from matching.model import CommKind

if TYPE_CHECKING:  # the event module imports `Channel` from here
    from matching.event import InboundEvent

TITLE_CHARS = 300


class Channel(StrEnum):
    EMAIL = "email"
    CALL = "call"
    TELEGRAM = "telegram"
    WHATSAPP = "whatsapp"
    WEBFORM = "webform"
    IMPORT = "import"
    SMS = "sms"


def _who(e: InboundEvent) -> str:
    return e.display_name or " ".join(p for p in (e.first_name, e.last_name) if p)


def _call(e: InboundEvent) -> str:
    return f"{e.phones[0] if e.phones else 'unknown number'} — incoming call"


def _mail(e: InboundEvent) -> str:
    return e.subject or f"Lead from e-mail {e.emails[0] if e.emails else _who(e)}"


def _form(e: InboundEvent) -> str:
    number = e.phones[0] if e.phones else None
    return f"Web form {e.line or ''}: {_who(e) or number or (e.emails or ('',))[0]}"


def _import(e: InboundEvent) -> str:
    number = e.phones[0] if e.phones else None
    return _who(e) or e.company_name or number or (e.emails or ("Import",))[0]


def labelled(label: str) -> Callable[[InboundEvent], str]:
    """The title rule of a messaging channel: "<label>: <who, or their number>"."""

    def title(e: InboundEvent) -> str:
        return f"{label}: {_who(e) or (e.phones[0] if e.phones else None) or 'new customer'}"

    return title


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    channel: Channel
    label: str  # the channel's name as reps read it: "Telegram", "SMS"
    source: str  # source code of a lead / deal it opens; also its `/leads` filter word
    activity_kind: str | None  # kind of the activity an event leaves; None: no activity
    title: Callable[[InboundEvent], str]  # the title of a record (or activity) it makes
    # The messenger identity its events carry (Handle.kind == this value), shown on cards.
    handle_kind: CommKind | None = None
    # The customer's communication a rep's reply through this channel is addressed to.
    reply_kind: CommKind | None = None


CHANNELS: dict[Channel, ChannelSpec] = {
    spec.channel: spec
    for spec in (
        ChannelSpec(Channel.EMAIL, "E-mail", "EMAIL", "email", _mail, reply_kind=CommKind.EMAIL),
        ChannelSpec(Channel.CALL, "Phone", "CALL", "call", _call),
        ChannelSpec(
            Channel.TELEGRAM,
            "Telegram",
            "TELEGRAM",
            "message",
            labelled("Telegram"),
            handle_kind=CommKind.TELEGRAM,
            reply_kind=CommKind.TELEGRAM,
        ),
        ChannelSpec(
            Channel.WHATSAPP,
            "WhatsApp",
            "WHATSAPP",
            "message",
            labelled("WhatsApp"),
            handle_kind=CommKind.WHATSAPP,
            reply_kind=CommKind.WHATSAPP,
        ),
        ChannelSpec(Channel.WEBFORM, "Web form", "WEBFORM", "webform", _form),
        ChannelSpec(Channel.IMPORT, "Import", "IMPORT", None, _import),
        ChannelSpec(
            Channel.SMS, "SMS", "SMS", "message", labelled("SMS"), reply_kind=CommKind.PHONE
        ),
    )
}


def spec_of(channel: str) -> ChannelSpec | None:
    """The entry of a channel by its stored value (activities keep it as text)."""
    try:
        return CHANNELS[Channel(channel)]
    except ValueError:
        return None


def label_of(channel: str) -> str:
    """A stored channel value as reps read it ("E-mail"); an unknown value as it is."""
    spec = spec_of(channel)
    return spec.label if spec is not None else channel


def activity_kinds() -> frozenset[str]:
    """Activity kinds inbound channels leave (what a card quotes as "the message")."""
    return frozenset(s.activity_kind for s in CHANNELS.values() if s.activity_kind)


def handle_kinds() -> dict[str, CommKind]:
    """Handle kind (as events spell it) → the communication kind it is stored as."""
    return {s.handle_kind.value: s.handle_kind for s in CHANNELS.values() if s.handle_kind}


def sources() -> tuple[str, ...]:
    """Source codes of the channels, in registry order (`/leads` filters by them)."""
    return tuple(dict.fromkeys(s.source for s in CHANNELS.values()))
