"""What each channel's events are called on the records they make: activity kind, source
label, and the title / person name of a new lead, deal or contact."""

from __future__ import annotations

from matching.event import Channel, InboundEvent

ACTIVITY_KIND = {
    Channel.EMAIL: "email",
    Channel.CALL: "call",
    Channel.TELEGRAM: "message",
    Channel.WHATSAPP: "message",
    Channel.WEBFORM: "webform",
}
SOURCE = {
    Channel.EMAIL: "EMAIL",
    Channel.CALL: "CALL",
    Channel.TELEGRAM: "TELEGRAM",
    Channel.WHATSAPP: "WHATSAPP",
    Channel.WEBFORM: "WEBFORM",
    Channel.IMPORT: "IMPORT",
}


def source_of(event: InboundEvent) -> str:
    """The source code stored on a new lead or deal."""
    return event.source or SOURCE[event.channel]


def title(e: InboundEvent) -> str:
    """The title of a record (or activity subject) made from the event."""
    if e.meta.get("title"):
        return str(e.meta["title"])[:300]
    who = e.display_name or " ".join(p for p in (e.first_name, e.last_name) if p)
    number = e.phones[0] if e.phones else None
    if e.channel is Channel.CALL:
        return f"{number or 'unknown number'} — incoming call"
    if e.channel is Channel.EMAIL:
        return (e.subject or f"Lead from e-mail {e.emails[0] if e.emails else who}")[:300]
    if e.channel is Channel.WEBFORM:
        return f"Web form {e.line or ''}: {who or number or (e.emails or ('',))[0]}"[:300]
    label = {Channel.TELEGRAM: "Telegram", Channel.WHATSAPP: "WhatsApp"}.get(e.channel)
    if label:
        return f"{label}: {who or number or 'new customer'}"[:300]
    return (who or e.company_name or number or (e.emails or ("Import",))[0])[:300]


def person_name(e: InboundEvent) -> str | None:
    """The sender's name as the event gives it, if any."""
    joined = " ".join(p for p in (e.first_name, e.last_name) if p)
    return (e.display_name or joined or None) and (e.display_name or joined)[:300]
