"""What an event's `meta` may hold: the typed channel → crm contract.

`InboundEvent.meta` is an `EventMeta`: a `TypedDict` (total=False) made of one part per kind of
channel (calls, mail, messages, forms, imports) and the keys intake reads from any channel.
Chosen over frozen dataclasses because a TypedDict *is* the dict at run time: the JSON of
events already journaled, in a Redis stream or in an event log decodes unchanged, keys a newer
or older writer (or a REST ingest) added ride along untouched into the activity's meta, and
mypy still checks every key and value where an event is built or read.

A new channel adds its keys to one of the parts (or a part of its own listed in `EventMeta`);
a key two channels spell alike must mean the same and has one type (`SharedMeta`).
"""

from __future__ import annotations

from typing import Any, TypedDict, cast


class IntakeMeta(TypedDict, total=False):
    """Keys intake acts on, whatever the channel."""

    title: str  # names the new lead / deal / contact (phone, web form template, CSV)
    queue: list[int]  # reps who get a new lead in turn (a mailbox's, a form's, a line owner)
    references: list[str]  # the thread: Message-IDs, or a call's earlier stages
    in_reply_to: str | None
    body: str  # the full text for the activity (the event's `text` is a preview)
    filtered: str | None  # why the channel's filter ignored it: logged, no record made
    import_as: str  # "contact": an import makes a contact, not a lead
    pipeline: str  # code of the pipeline a new deal goes to
    utm: dict[str, str]


# "from" is a keyword: the functional form. Keys several channels write, with one meaning.
SharedMeta = TypedDict(
    "SharedMeta",
    {
        "from": str | None,  # the sender's address / number as the channel gave it
        "to": str | list[str] | None,  # our number (call, SMS) or the mail's recipients
        "message_id": str | int,  # the channel's message id (Message-ID, Telegram's int)
        "duration": int | None,  # seconds: a call's conversation, a voice message's length
        "fields": dict[str, str],  # form fields / CSV columns no mapping used
    },
    total=False,
)


class CallMeta(TypedDict, total=False):
    call_id: str  # several events of one call share one activity
    stage: str
    direction: str
    line: str | None
    agent_extension: str | None
    started_at: str | None
    ended_at: str | None
    disposition: str | None
    recording_url: str | None
    missed: bool
    withheld: bool
    number_parsed: bool


class MailMeta(TypedDict, total=False):
    customer: str  # the customer's address (a form robot's Reply-To)
    mailbox: str  # the configured mailbox it came to (a rep's answer goes out from it)
    cc: list[str]
    verdict_reason: str | None


class MessageMeta(TypedDict, total=False):
    """Messengers and SMS."""

    bot_id: int
    chat_id: int
    telegram_files: list[str]
    reply_to_message_id: int
    phone_verified: bool  # the customer shared their own Telegram number
    wa_message_type: str
    phone_number_id: str | None
    display_phone_number: str | None
    wa_id: str | None  # the WhatsApp sender's number, digits only (a reply's `to`)
    user_id: str | None  # their business-scoped user id (a reply's `recipient`)
    media: list[dict[str, Any]]  # WhatsApp media ids and types
    button_payload: str
    reply_id: str
    flow_response: str | None
    reacted_to: str
    reply_to: str
    forwarded: bool
    referral: dict[str, str]
    message_sid: str  # Twilio's
    media_urls: list[str]  # where Twilio keeps an MMS's pictures and files


class FormMeta(TypedDict, total=False):
    form: str
    client_ip: str
    duplicate_mode: str
    responsible_queue: list[int]
    form_subject: str


class ImportMeta(TypedDict, total=False):
    file: str  # digest of the imported file
    row: int
    source_label: str  # the file's own lead source
    warnings: list[str]


class EventMeta(
    IntakeMeta, SharedMeta, CallMeta, MailMeta, MessageMeta, FormMeta, ImportMeta, total=False
):
    """Everything `InboundEvent.meta` may say; each key optional."""


def decode_meta(raw: object) -> EventMeta:
    """`meta` as JSON gave it. Our own `to_json` wrote it, so known keys carry their types;
    unknown keys (an older or newer writer's) are kept as they are and never read by type."""
    if not isinstance(raw, dict):
        return EventMeta()
    return cast(EventMeta, dict(raw))
