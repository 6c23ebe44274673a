"""What each channel's events are called on the records they make: activity kind, source
label, and the title / person name of a new lead, deal or contact. The per-channel facts are the
registry's (`matching.channels`); this module applies them to an event."""

from __future__ import annotations

from matching.channels import CHANNELS, TITLE_CHARS
from matching.event import InboundEvent

ACTIVITY_KIND = {c: s.activity_kind for c, s in CHANNELS.items() if s.activity_kind}
SOURCE = {c: s.source for c, s in CHANNELS.items()}


def source_of(event: InboundEvent) -> str:
    """The source code stored on a new lead or deal."""
    return event.source or SOURCE[event.channel]


def title(e: InboundEvent) -> str:
    """The title of a record (or activity subject) made from the event."""
    if e.meta.get("title"):
        return str(e.meta["title"])[:TITLE_CHARS]
    return CHANNELS[e.channel].title(e)[:TITLE_CHARS]


def person_name(e: InboundEvent) -> str | None:
    """The sender's name as the event gives it, if any."""
    joined = " ".join(p for p in (e.first_name, e.last_name) if p)
    return (e.display_name or joined or None) and (e.display_name or joined)[:300]
