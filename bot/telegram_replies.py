"""The customer-facing Telegram bot as a reply sender: a rep's answer goes to the chat as plain
text (no parse mode, so nothing a rep types is read as markup)."""

from __future__ import annotations

from telegram import Bot
from telegram.error import BadRequest, Forbidden, TelegramError

from crm.dto import ActivityView
from crm.errors import Conflict
from crm.replies import Sent

MAX_TEXT = 4096  # Telegram's limit for one message


class TelegramReplies:
    def __init__(self, bot: Bot) -> None:
        self.bot = bot  # the bot customers write to

    @property
    def max_chars(self) -> int:
        return MAX_TEXT

    def refusal(self, answering: ActivityView | None) -> str | None:
        return None

    async def send(self, to: str, text: str, *, answering: ActivityView | None = None) -> Sent:
        if not to.lstrip("-").isdigit():
            raise Conflict(f"“{to[:40]}” is not a Telegram chat; the message was not sent")
        chat_id = int(to)
        try:
            sent = await self.bot.send_message(chat_id, text)
        except Forbidden:
            raise Conflict(
                "the customer has blocked the bot; the message was not delivered"
            ) from None
        except BadRequest as err:
            raise Conflict(f"Telegram did not deliver the message: {err}") from None
        except TelegramError as err:
            raise Conflict(
                f"Telegram did not answer; the message may not have arrived ({err})"
            ) from None
        return Sent(
            f"{self.bot.id}:out:{chat_id}:{sent.message_id}",
            {"chat_id": chat_id, "message_id": sent.message_id, "bot_id": self.bot.id},
        )
