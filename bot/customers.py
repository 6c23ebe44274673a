"""The customer side of the bot: messages from people who are not reps become inbound events.

On first contact the bot asks once for the customer's phone (a `request_contact` button). While
that question is open the customer's messages are held (persisted, see `crm.services.chat_state`)
so that, once the phone arrives, they join the record that already has that phone (a call, an
e-mail) instead of opening a second record. A phone is only trusted from the customer's own
contact card. "Not now", or `PHONE_WAIT` without an answer, lets the held messages go on as
they are. Intake is never awaited here: events go to the service's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from telegram import (
    KeyboardButton,
    Message,
    MessageEntity,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import TelegramError
from telegram.ext import Application, CommandHandler, ContextTypes, MessageHandler, filters

from bot.clock import Clock
from bot.customer_events import customer_event, is_own_contact, own_phone, with_verified_phone
from crm.services.chat_state import ChatKey, ChatStates, Hold
from matching.event import InboundEvent

log = logging.getLogger(__name__)

Context = ContextTypes.DEFAULT_TYPE
Submit = Callable[[InboundEvent], Awaitable[None]]
PHONE_WAIT = timedelta(minutes=2)  # how long messages wait for the phone before going on

SHARE = "📱 Share my phone number"
NOT_NOW = "Not now"
GREETING = "Hello! Write us your question here — a colleague will answer in this chat."
ASK = (
    "Thank you for your message! So that we can also call you back, may we have your phone "
    "number? Tap the button below to share it — or “Not now”."
)
ASK_AFTER_START = (
    "So that we can also call you back, may we have your phone number? Tap the button below "
    "to share it — or “Not now”."
)
THANKS_PHONE = "Thank you! We have your number. A colleague will answer you here shortly."
THANKS_NO_PHONE = "All right. A colleague will answer you here shortly."
COMMANDS_ARE_FOR_THE_TEAM = (
    "Commands are for our sales team only — just write your question here and a colleague "
    "will answer you."
)


def is_command(message: Message) -> bool:
    """A bot command (`/leads`, `/lead 6`) at the start of the message."""
    return any(
        e.type == MessageEntity.BOT_COMMAND and e.offset == 0 for e in message.entities or ()
    )


def phone_keyboard() -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        [[KeyboardButton(SHARE, request_contact=True)], [KeyboardButton(NOT_NOW)]],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


class CustomerDesk:
    def __init__(
        self,
        submit: Submit,
        states: ChatStates,
        clock: Clock,
        *,
        ask_phone: bool = True,
        wait: timedelta = PHONE_WAIT,
    ) -> None:
        self.submit = submit
        self.states = states
        self.clock = clock
        self.ask_phone = ask_phone
        self.wait = wait

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Every private message to a customer-only bot is a customer's."""
        private = filters.ChatType.PRIVATE
        app.add_handler(CommandHandler("start", self.start, filters=private))
        app.add_handler(MessageHandler(private & ~filters.StatusUpdate.ALL, self.message))

    # --- handlers -------------------------------------------------------------------------------

    async def start(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or user.is_bot:
            return
        key = ChatKey(message.get_bot().id, user.id)
        if self.ask_phone and await self.states.open_question(key, self.clock.now()):
            await message.reply_text(
                f"{GREETING}\n\n{ASK_AFTER_START}", reply_markup=phone_keyboard(), do_quote=False
            )
        else:
            await message.reply_text(GREETING, do_quote=False)

    async def message(self, update: Update, context: Context | None = None) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        if is_command(message):  # never a customer's message: "/lead 6" is no inquiry
            await _say(message, COMMANDS_ARE_FOR_THE_TEAM, None)
            return
        bot = message.get_bot()
        event = customer_event(bot.id, update.update_id, message)
        if event is None:
            return
        key = ChatKey(bot.id, user.id)
        now = self.clock.now()
        if is_own_contact(message):
            assert message.contact is not None
            held = await self.states.release(key, now)
            phone = own_phone(message.contact)
            # The held messages carry the phone now; without any, the card itself is the news.
            for e in held or [event]:
                await self.submit(with_verified_phone(e, phone))
            await _say(message, THANKS_PHONE, ReplyKeyboardRemove())
            return
        if (message.text or "").strip() == NOT_NOW:
            held = await self.states.release(key, now)
            if held is not None:
                for e in held:
                    await self.submit(e)
                await _say(message, THANKS_NO_PHONE, ReplyKeyboardRemove())
                return
        if not self.ask_phone:
            await self.submit(event)
            return
        verdict = await self.states.hold(key, event, now)
        if verdict is Hold.PASS:
            await self.submit(event)
        elif verdict is Hold.ASK:
            await _say(message, ASK, phone_keyboard())

    # --- questions nobody answered -------------------------------------------------------------

    async def flush_expired(self) -> int:
        """Let the messages of customers who did not answer in time go on; how many."""
        now = self.clock.now()
        count = 0
        for key in await self.states.waiting_since(now - self.wait):
            for event in await self.states.release(key, now) or []:
                await self.submit(event)
                count += 1
        return count

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                await self.flush_expired()
            except Exception:
                log.exception("releasing held customer messages failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


async def _say(
    message: Message, text: str, markup: ReplyKeyboardMarkup | ReplyKeyboardRemove | None
) -> None:
    """A reply to the customer; failing to send it must not lose their message."""
    try:
        await message.reply_text(text, reply_markup=markup, do_quote=False)
    except TelegramError as err:
        log.warning("could not answer Telegram user %s: %s", message.chat_id, err)
