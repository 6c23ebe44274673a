"""A rep's answer to a customer: sent through the customer-facing bot, then recorded.

The text goes out as plain text (no parse mode), so nothing a rep types is read as markup.
It is recorded as an outgoing `message` activity on the record only once Telegram accepted it:
a message that never reached the customer must not show up in their history.
"""

from __future__ import annotations

import logging

from telegram import Bot
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.cards import Cards
from bot.commands import actor_of
from crm.dto import RepView
from crm.errors import Conflict, InvalidInput
from crm.services.messages import Messages

log = logging.getLogger(__name__)

MAX_TEXT = 4096  # Telegram's limit for one message


class Relay:
    def __init__(self, cards: Cards, messages: Messages, bot: Bot) -> None:
        self.cards = cards
        self.messages = messages
        self.bot = bot  # the bot customers write to

    async def chat_of(self, rep: RepView, kind: str, ident: int) -> tuple[int, str]:
        """The customer's chat and name; the rep's rights are checked on the way."""
        card = await self.cards.load(kind, ident, actor_of(rep))
        if card.ctx.chat_id is None:
            raise Conflict(f"{kind} #{ident} has no Telegram chat to answer")
        person = card.lead.name if card.lead else card.contact.name if card.contact else None
        return card.ctx.chat_id, person or "the customer"

    async def send(self, rep: RepView, kind: str, ident: int, text: str) -> str:
        """Send `text` to the record's customer; the toast for the rep."""
        text = text.strip()
        if not text:
            raise InvalidInput("the message is empty")
        if len(text) > MAX_TEXT:
            raise InvalidInput(f"the message is too long for Telegram (at most {MAX_TEXT})")
        chat_id, person = await self.chat_of(rep, kind, ident)
        try:
            sent = await self.bot.send_message(chat_id, text)
        except Forbidden:
            raise Conflict(f"{person} has blocked the bot; the message was not delivered") from None
        except BadRequest as err:
            raise Conflict(f"Telegram did not deliver the message: {err}") from None
        except TelegramError as err:
            raise Conflict(
                f"Telegram did not answer; the message may not have arrived ({err})"
            ) from None
        await self.messages.record_outgoing(
            kind,
            ident,
            text,
            actor_of(rep),
            channel="telegram",
            external_id=f"{self.bot.id}:out:{chat_id}:{sent.message_id}",
            counterparty=str(chat_id),
            meta={"chat_id": chat_id, "message_id": sent.message_id, "bot_id": self.bot.id},
        )
        log.info("rep #%s answered %s #%s in Telegram chat %s", rep.id, kind, ident, chat_id)
        return f"✉️ Sent to {person}."
