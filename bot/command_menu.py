"""The command menu each chat shows (setMyCommands): reps see theirs, admins also /exceptions
and /settings. A rep who joins, or whose role changes (the CLI runs in another process), gets
the right menu within a duties interval, without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from telegram import Bot, BotCommand, BotCommandScopeChat
from telegram.error import TelegramError

from bot.handlers import commands_menu
from crm.facade import Crm

log = logging.getLogger(__name__)


class CommandMenus:
    def __init__(self, crm: Crm, bot: Bot) -> None:
        self.crm = crm
        self.bot = bot
        self.registered: dict[int, tuple[tuple[str, str], ...]] = {}  # chat → its menu

    async def register(self) -> None:
        """The default menu, then every rep's chat; a failure is cosmetic (logged)."""
        try:
            await self.bot.set_my_commands([BotCommand(*c) for c in commands_menu("rep")])
        except TelegramError as err:
            log.warning("could not register the command menu: %s", err)
        await self.sync()

    async def sync(self) -> int:
        """Register the menu of every chat whose rep's role changed or who joined; how many."""
        changed = 0
        for rep in await self.crm.reps.all(include_inactive=False):
            chat = rep.telegram_user_id
            menu = tuple(commands_menu(rep.role))
            if chat is None or self.registered.get(chat) == menu:
                continue
            try:
                await self.bot.set_my_commands(
                    [BotCommand(*c) for c in menu], scope=BotCommandScopeChat(chat)
                )
            except TelegramError as err:  # tried again on the next round
                log.warning("could not register the command menu for rep #%s: %s", rep.id, err)
                continue
            self.registered[chat] = menu
            changed += 1
        return changed

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            try:
                await self.sync()
            except Exception:
                log.exception("registering command menus failed")
