"""A customer's Telegram message as an `InboundEvent`: pure, no I/O.

The external id is ``<bot id>:<update id>``: Telegram numbers updates per bot and redelivers an
update with the same id, so a redelivery is a duplicate for intake. Files are recorded as
metadata only (name, type, size, Telegram's file id to fetch them later), never downloaded.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from datetime import UTC, timedelta

from telegram import Contact, Message, User

from matching.event import Attachment, Channel, EventMeta, Handle, InboundEvent

SOURCE = "TELEGRAM"


def handle_of(user: User) -> Handle:
    return Handle("telegram", str(user.id), user.username)


def is_own_contact(message: Message) -> bool:
    """A contact card of the sender themselves: the request_contact button sends these, and
    Telegram fills in the user id only for a real account, so the phone is verified."""
    contact, user = message.contact, message.from_user
    return contact is not None and user is not None and contact.user_id == user.id


def own_phone(contact: Contact) -> str:
    """Telegram gives the account's number in international format, usually without "+":
    read as a national number it would be someone else's."""
    raw = contact.phone_number.strip()
    return raw if raw.startswith("+") or not raw.isdigit() else "+" + raw


def _seconds(value: int | timedelta) -> int:
    return int(value.total_seconds()) if isinstance(value, timedelta) else int(value)


def _duration(message: Message) -> int | None:
    if message.voice is None:
        return None
    with warnings.catch_warnings():  # PTB warns about the int/timedelta type change
        warnings.simplefilter("ignore")
        return _seconds(message.voice.duration)


def _contact_note(contact: Contact) -> Attachment:
    """Someone else's contact card: recorded like a file, never as the sender's phone."""
    name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
    label = " ".join(p for p in (name, contact.phone_number) if p) or "contact"
    return Attachment(name=f"contact card: {label}"[:200], content_type="text/vcard", size=0)


def attachments_of(message: Message) -> tuple[tuple[Attachment, ...], list[str]]:
    """The message's files as metadata, and their Telegram file ids (same order)."""
    found: list[tuple[Attachment, str]] = []
    if message.photo:
        best = max(message.photo, key=lambda p: (p.file_size or 0, p.width * p.height))
        found.append((Attachment("photo.jpg", "image/jpeg", best.file_size or 0), best.file_id))
    if message.document is not None:
        doc = message.document
        attachment = Attachment(
            (doc.file_name or "document")[:200],
            doc.mime_type or "application/octet-stream",
            doc.file_size or 0,
        )
        found.append((attachment, doc.file_id))
    if message.voice is not None:
        voice = message.voice
        attachment = Attachment("voice.ogg", voice.mime_type or "audio/ogg", voice.file_size or 0)
        found.append((attachment, voice.file_id))
    if message.contact is not None and not is_own_contact(message):
        found.append((_contact_note(message.contact), ""))
    return tuple(a for a, _ in found), [f for _, f in found]


def _other_content(message: Message) -> str | None:
    """A short note for content we do not record (stickers, videos, locations …)."""
    if message.sticker is not None:
        return f"[sticker {message.sticker.emoji or ''}]".replace(" ]", "]")
    for kind in ("video", "video_note", "audio", "animation", "location", "venue", "poll"):
        if getattr(message, kind, None):
            return f"[{kind.replace('_', ' ')}]"
    return None


def customer_event(bot_id: int, update_id: int, message: Message) -> InboundEvent | None:
    """The event for a customer's private message; None when it has no sender."""
    user = message.from_user
    if user is None or user.is_bot:
        return None
    attachments, file_ids = attachments_of(message)
    text = message.text or message.caption
    if text is None and not attachments:
        text = _other_content(message)
    meta: EventMeta = {
        "bot_id": bot_id,
        "chat_id": message.chat_id,
        "message_id": message.message_id,
    }
    if any(file_ids):
        meta["telegram_files"] = file_ids
    duration = _duration(message)
    if duration is not None:
        meta["duration"] = duration
    if message.reply_to_message is not None:
        meta["reply_to_message_id"] = message.reply_to_message.message_id
    phones: tuple[str, ...] = ()
    if is_own_contact(message):
        assert message.contact is not None
        phones = (own_phone(message.contact),)
        text = text or f"Shared their phone number {phones[0]}"
        meta["phone_verified"] = True
    occurred = message.date if message.date.tzinfo else message.date.replace(tzinfo=UTC)
    return InboundEvent(
        channel=Channel.TELEGRAM,
        external_id=f"{bot_id}:{update_id}",
        occurred_at=occurred,
        display_name=user.full_name or None,
        first_name=user.first_name or None,
        last_name=user.last_name,
        phones=phones,
        handles=(handle_of(user),),
        text=text,
        attachments=attachments,
        source=SOURCE,
        meta=meta,
    )


def with_verified_phone(event: InboundEvent, phone: str) -> InboundEvent:
    """A held message of a customer who has since shared their own phone."""
    phones = event.phones if phone in event.phones else (*event.phones, phone)
    return replace(event, phones=phones, meta={**event.meta, "phone_verified": True})
