"""Reply ports: how a rep's answer from a card reaches the customer, through the channel the
customer last wrote in.

Each channel that can answer gives the bot a `ReplySender` (Telegram's own bot, Twilio SMS, …),
keyed by its `Channel` value; the registry's `reply_kind` says which of the customer's
communications is the address. The bot records what a sender accepted as an outgoing activity,
so a sender only sends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from crm.dto import ActivityView


@dataclass(frozen=True, slots=True)
class Sent:
    """What a channel accepted: its id for the message (unique within the channel) and the
    facts worth keeping on the outgoing activity."""

    external_id: str
    meta: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None  # the outgoing activity's subject (a mail's), else a default


class ReplySender(Protocol):
    """One channel's way out. `send` raises `crm.errors.Conflict` with a sentence for the rep
    when the message was not delivered (blocked, refused, provider unreachable)."""

    @property
    def max_chars(self) -> int:
        """The longest text the channel takes in one message."""
        ...

    def refusal(self, answering: ActivityView | None) -> str | None:
        """Why the channel would refuse a message now (WhatsApp's closed 24-hour window), or
        None: the bot says it before the rep types, and `send` checks it again."""
        ...

    async def send(self, to: str, text: str, *, answering: ActivityView | None = None) -> Sent:
        """Send `text` to `to`. `answering` is the customer's latest inbound activity in this
        channel (None when they never wrote in it): mail threads onto it, WhatsApp checks its
        24-hour window with it. A sender never retries on its own: a retry that follows a
        timeout could deliver the message twice."""
        ...


# By `Channel` value. The service owns one mutable mapping: channel components add their sender
# while the service is built, the bot reads it when a rep answers.
ReplySenders = dict[str, ReplySender]
