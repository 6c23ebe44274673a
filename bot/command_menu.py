"""The command menu each chat shows (setMyCommands).

Every rep's chat gets its role's menu by chat scope (admins also /exceptions and /settings).
The default scope is what everyone else sees: only /start (customers start a conversation,
reps join with their invite link), so strangers never see the reps' commands. A deactivated
rep's chat menu is deleted, so it falls back to the default. A rep who joins, changes role or
is deactivated gets the right menu at once when that happens in this process (`Reps.on_change`
calls `wake`), within a sync interval when another process (the CLI) did it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from telegram import Bot, BotCommand, BotCommandScopeChat
from telegram.error import TelegramError

from bot.clock import wait_any
from bot.handlers import commands_menu
from crm.facade import Crm

log = logging.getLogger(__name__)

Menu = tuple[tuple[str, str], ...]
CUSTOMER_MENU: Menu = (("start", "Start a conversation with us"),)
JOIN_MENU: Menu = (("start", "Join the team with your invite link"),)  # a reps-only bot's
NO_MENU: Menu = ()  # a chat whose own menu was deleted (it sees the default one)


def _commands(menu: Sequence[tuple[str, str]]) -> list[BotCommand]:
    return [BotCommand(*c) for c in menu]


async def default_menu(bot: Bot, menu: Menu = CUSTOMER_MENU) -> None:
    """The menu of every chat without its own (a customers-only bot: the customer's); a
    failure is cosmetic (logged)."""
    try:
        await bot.set_my_commands(_commands(menu))
    except TelegramError as err:
        log.warning("could not register the command menu: %s", err)


class CommandMenus:
    def __init__(self, crm: Crm, bot: Bot, *, shared: bool = True) -> None:
        self.crm = crm
        self.bot = bot
        self.shared = shared  # customers write to this bot too
        self.registered: dict[int, Menu] = {}  # chat → the menu it was given
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A rep changed in this process (`Reps.on_change`): sync now, not at the interval."""
        self._wake.set()

    async def register(self) -> None:
        """The default menu, then every rep's chat; a failure is cosmetic (logged)."""
        await default_menu(self.bot, CUSTOMER_MENU if self.shared else JOIN_MENU)
        await self.sync()

    async def sync(self) -> int:
        """Give every rep's chat its role's menu and take it from deactivated reps (also
        those deactivated while the bot was down: the first round deletes theirs); only chats
        whose menu changed are sent. Returns how many."""
        wanted: dict[int, Menu] = {}
        for rep in await self.crm.reps.all(include_inactive=True):
            chat = rep.telegram_user_id
            if chat is not None and (rep.active or chat not in wanted):
                wanted[chat] = tuple(commands_menu(rep.role)) if rep.active else NO_MENU
        # A chat given a menu earlier and no rep's now (its account was rebound): deleted.
        wanted.update({chat: NO_MENU for chat in self.registered.keys() - wanted.keys()})
        changed = 0
        for chat, menu in wanted.items():
            if self.registered.get(chat) == menu:
                continue
            try:
                if menu:
                    await self.bot.set_my_commands(_commands(menu), scope=BotCommandScopeChat(chat))
                else:
                    await self.bot.delete_my_commands(scope=BotCommandScopeChat(chat))
            except TelegramError as err:  # tried again on the next round
                log.warning("could not register the command menu of chat %s: %s", chat, err)
                continue
            self.registered[chat] = menu
            changed += 1
        return changed

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            await wait_any(stop, self._wake, timeout=interval)  # a rep changed in this process
            self._wake.clear()
            try:
                await self.sync()
            except Exception:
                log.exception("registering command menus failed")
