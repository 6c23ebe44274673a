"""A rep's answer to a customer: sent through the channel the customer last wrote in (one that
has a `ReplySender`), then recorded.

It is recorded as an outgoing `message` activity on the record only once the channel accepted
it: a message that never reached the customer must not show up in their history.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bot.cards import Cards
from bot.commands import actor_of
from bot.views import (
    ReplyTarget,
)
from crm.dto import RepView
from crm.errors import Conflict, InvalidInput
from crm.replies import ReplySender
from crm.services.messages import Messages
from matching.channels import spec_of

log = logging.getLogger(__name__)


def channel_label(channel: str) -> str:
    spec = spec_of(channel)
    return spec.label if spec is not None else channel


class Relay:
    def __init__(
        self, cards: Cards, messages: Messages, senders: Mapping[str, ReplySender]
    ) -> None:
        self.cards = cards
        self.messages = messages
        self.senders = senders  # by channel; read at each answer (channels register theirs)

    async def target_of(self, rep: RepView, kind: str, ident: int) -> tuple[ReplyTarget, str]:
        """Where an answer goes and the customer's name; the rep's rights are checked."""
        card = await self.cards.load(kind, ident, actor_of(rep))
        if card.ctx.reply is None:
            raise Conflict(f"{kind} #{ident} has no chat or number to answer")
        sender = self.senders.get(card.ctx.reply.channel)
        if sender is not None and (why := sender.refusal(card.ctx.reply.answering)) is not None:
            raise Conflict(why)  # before the rep types an answer that cannot go out
        person = card.lead.name if card.lead else card.contact.name if card.contact else None
        return card.ctx.reply, person or "the customer"

    async def send(self, rep: RepView, kind: str, ident: int, text: str) -> str:
        """Send `text` to the record's customer; the toast for the rep."""
        text = text.strip()
        if not text:
            raise InvalidInput("the message is empty")
        target, person = await self.target_of(rep, kind, ident)
        sender = self.senders.get(target.channel)
        if sender is None:
            raise Conflict(f"answering in {channel_label(target.channel)} is not set up")
        label = channel_label(target.channel)
        if len(text) > sender.max_chars:
            raise InvalidInput(f"the message is too long for {label} (at most {sender.max_chars})")
        sent = await sender.send(target.to, text, answering=target.answering)
        spec = spec_of(target.channel)
        await self.messages.record_outgoing(
            kind,
            ident,
            text,
            actor_of(rep),
            channel=target.channel,
            external_id=sent.external_id,
            counterparty=target.to,
            meta=sent.meta,
            # A mail answer is an e-mail in the history, a messenger's a message.
            activity_kind=(spec.activity_kind if spec else None) or "message",
            subject=sent.subject,
        )
        log.info("rep #%s answered %s #%s in %s", rep.id, kind, ident, label)
        return f"✉️ Sent to {person} via {label}."
