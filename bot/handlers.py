"""Telegram glue: who is writing, what they asked for, and the reply. Nothing else.

Only active reps get anything from the CRM; anyone else gets one short, polite sentence. Every
refused action (another rep's record, a role the rep lacks) is logged with the Telegram user id.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from telegram import (
    ForceReply,
    InlineKeyboardMarkup,
    Message,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot import callbacks as cb
from bot import lists, views
from bot.actions import Actions, Outcome, Press
from bot.commands import Commands, actor_of, record_number
from bot.customers import CustomerDesk
from bot.sending import NO_PREVIEW, edit_card, markup
from bot.stats import Pictured, StatsCommand
from bot.sync import CardSync
from bot.views import (
    Rendered,
    clip,
)
from crm.dto import RepView
from crm.errors import CrmError, Forbidden
from crm.facade import Crm
from crm.services.prompts import Prompt as OpenPrompt

log = logging.getLogger(__name__)

Context = ContextTypes.DEFAULT_TYPE
Command = Callable[[RepView, list[str]], Awaitable[Rendered]]
Handler = Callable[[Update, Context], Coroutine[Any, Any, None]]
ANSWER_CHARS = 190  # Telegram allows 200 characters in a button answer
STALE = "This button is from an older card. Open the record again, e.g. with /lead 12."
STRANGER_SHORT = "This bot is for our sales team only."
HINT = "Use the buttons on a card, reply to a card to comment, or see /help."


def sentence(err: Exception | str) -> str:
    text = str(err).strip() or "That did not work."
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def first_line(message: Message | None) -> str | None:
    if message is None or not message.text:
        return None
    return message.text.split("\n", 1)[0] or None


def _record_of(press: Press) -> tuple[str, int] | None:
    """The lead or deal a press changed."""
    try:
        kind, ident = press.button.record
    except cb.StaleButton:
        return press.owner
    return (kind, ident) if kind in ("lead", "deal") else press.owner


def card_ref_in(keyboard: InlineKeyboardMarkup | None) -> tuple[str, int] | None:
    """The lead or deal a card's buttons act on."""
    for row in keyboard.inline_keyboard if keyboard else ():
        for button in row:
            try:
                kind, ident = cb.decode(str(button.callback_data)).record
            except cb.StaleButton:
                continue
            if kind in ("lead", "deal"):
                return kind, ident
    return None


class Handlers:
    def __init__(
        self,
        crm: Crm,
        commands: Commands,
        actions: Actions,
        sync: CardSync | None = None,
        customers: CustomerDesk | None = None,
        web_url: str | None = None,
        on_join: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.crm = crm
        # The web console's public base URL; None: the console is off or unreachable.
        self.web_url = web_url
        self.commands = commands
        self.actions = actions
        self.sync = sync
        # Customers write to this bot too: whoever is not a rep is served by the desk.
        self.customers = customers
        # A rep joined: their chat gets the command menu of their role.
        self.on_join = on_join
        # Open prompts (a reply to one finishes its action and redraws the card) are kept in
        # the database (`crm.prompts`): a prompt left open across a restart still works.

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        private = filters.ChatType.PRIVATE
        app.add_handler(CommandHandler("start", self.start, filters=private))
        table: dict[str, Command] = {
            "help": self._help,
            "leads": self.commands.leads,
            "lead": self._lead,
            "deals": self.commands.deals,
            "deal": self._deal,
            "find": self.commands.find,
            "today": self._today,
            "exceptions": self.commands.exceptions,
            "settings": self._settings,
            "web": self._web,
            "stats": StatsCommand(self.crm, self.commands.clock).run,
            "team": self._team,
            "history": self.commands.history,
        }
        for name, run in table.items():
            app.add_handler(CommandHandler(name, self._command(run), filters=private))
        app.add_handler(CallbackQueryHandler(self.button))
        app.add_handler(
            MessageHandler(private & filters.TEXT & filters.REPLY & ~filters.COMMAND, self.reply)
        )
        app.add_handler(MessageHandler(private, self.other))
        app.add_error_handler(self.error)

    # --- who ------------------------------------------------------------------------------

    async def rep_of(self, update: Update) -> RepView | None:
        user = update.effective_user
        if user is None or user.is_bot:
            return None
        rep = await self.crm.reps.by_telegram(user.id)
        return rep if rep is not None and rep.active else None

    async def _rep_or_decline(self, update: Update) -> RepView | None:
        """The rep writing; anyone else is a customer (served by the desk) or declined."""
        rep = await self.rep_of(update)
        if rep is not None:
            return rep
        if self.customers is not None:
            await self.customers.message(update)
        elif update.effective_message is not None:
            await update.effective_message.reply_text(lists.STRANGER)
        return None

    def _refused(self, update: Update, rep: RepView, what: str, err: Exception) -> None:
        user = update.effective_user
        log.warning(
            "refused: rep #%s (Telegram user %s) tried %s: %s",
            rep.id,
            user.id if user else "?",
            what,
            err,
        )

    # --- commands -------------------------------------------------------------------------

    async def start(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        if context.args:
            try:
                joined = await self.crm.reps.redeem_invite(context.args[0], user.id)
            except CrmError as err:  # a stale invite is said so, even to a customer
                await message.reply_text(sentence(err))
                return
            log.info("rep #%s %s is now Telegram user %s", joined.id, joined.name, user.id)
            welcome = f"Welcome, {views.esc(joined.name)}! New leads will arrive here.\n\n"
            await _reply(message, Rendered(welcome + lists.help_text(joined.role)))
            if self.on_join is not None:
                await self.on_join()
            return
        rep = await self.rep_of(update)
        if rep is not None:
            await _reply(message, Rendered(lists.help_text(rep.role)))
        elif self.customers is not None:
            await self.customers.start(update, context)
        else:
            await message.reply_text(lists.STRANGER)

    def _command(self, run: Command) -> Handler:
        async def handle(update: Update, context: Context) -> None:
            message = update.effective_message
            rep = await self._rep_or_decline(update)
            if rep is None or message is None:
                return
            try:
                rendered = await run(rep, list(context.args or []))
            except Forbidden as err:
                self._refused(update, rep, message.text or "a command", err)
                await message.reply_text(sentence(err))
                return
            except CrmError as err:
                await message.reply_text(sentence(err))
                return
            await _reply(message, rendered)
            if isinstance(rendered, Pictured):
                await message.reply_photo(
                    rendered.photo, caption=rendered.caption, filename="stats.png"
                )

        return handle

    async def _help(self, rep: RepView, args: list[str]) -> Rendered:
        return Rendered(lists.help_text(rep.role))

    async def _lead(self, rep: RepView, args: list[str]) -> Rendered:
        return await self.commands.record(rep, "lead", record_number(args, "lead"))

    async def _deal(self, rep: RepView, args: list[str]) -> Rendered:
        return await self.commands.record(rep, "deal", record_number(args, "deal"))

    async def _today(self, rep: RepView, args: list[str]) -> Rendered:
        return await self.commands.today(rep)

    async def _team(self, rep: RepView, args: list[str]) -> Rendered:
        return await self.commands.team(rep)

    async def _settings(self, rep: RepView, args: list[str]) -> Rendered:
        return await self.commands.settings(rep)

    # --- buttons --------------------------------------------------------------------------

    async def button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is None:
            return
        rep = await self.rep_of(update)
        if rep is None:
            await query.answer(STRANGER_SHORT, show_alert=True)
            return
        message = query.message if isinstance(query.message, Message) else None
        try:
            button = cb.decode(query.data)
        except cb.StaleButton:
            await query.answer(STALE, show_alert=True)
            return
        press = Press(button, rep, first_line(message), await self._owner(message))
        try:
            outcome = await self.actions.run(press)
        except Forbidden as err:
            self._refused(update, rep, f"button {query.data!r}", err)
            await query.answer(clip(sentence(err), ANSWER_CHARS), show_alert=True)
            return
        except (CrmError, cb.StaleButton) as err:
            # Stale or already handled: say so, and show the card as it is now.
            redrawn = await self.actions.redraw(press)
            if redrawn is not None and message is not None:
                await _edit(message, redrawn)
            await query.answer(clip(sentence(err), ANSWER_CHARS), show_alert=True)
            return
        try:
            await self._apply(message, outcome, press.headline)
            if outcome.card is not None and outcome.toast is not None and message is not None:
                await self._sync(message, _record_of(press), message.message_id)
                if press.button.action != cb.REASSIGN:  # the new holder is told "assigned"
                    await self.actions.tell_owner(press.rep, _record_of(press), outcome.toast)
        finally:  # answered last: once the spinner stops, the card shows the new state
            await query.answer(clip(outcome.toast, ANSWER_CHARS) if outcome.toast else None)

    async def _apply(
        self, message: Message | None, outcome: Outcome, headline: str | None = None
    ) -> None:
        if message is None:
            return
        if outcome.card is not None:
            await _edit(message, outcome.card)
        elif outcome.rows is not None:
            try:
                await message.edit_reply_markup(markup(Rendered("", outcome.rows)))
            except BadRequest as err:
                _ignore_unchanged(err)
        if outcome.send is not None:
            await _reply(message, outcome.send, quote=False)
        if outcome.prompt is not None:
            p = outcome.prompt
            if outcome.card is not None:  # the card the answer redraws, as it is now
                headline = views.plain_text(outcome.card.text.split("\n", 1)[0]) or headline
            asked = await message.reply_text(
                p.text,
                reply_markup=ForceReply(selective=True, input_field_placeholder=p.placeholder),
                do_quote=False,
            )
            await self.crm.prompts.open(
                OpenPrompt(
                    asked.chat_id,
                    asked.message_id,
                    p.action,
                    p.ref,
                    card_id=message.message_id,
                    headline=headline,
                    # "Reply" to a customer: the rep's next plain message is the answer too.
                    next_message=p.action == cb.REPLY,
                )
            )

    async def _owner(self, message: Message | None) -> tuple[str, int] | None:
        """The record a message of ours shows: from its buttons, else from the card log."""
        if message is None:
            return None
        found = card_ref_in(message.reply_markup)
        if found is not None:
            return found
        ref = await self.crm.outbox.card_at(message.chat_id, message.message_id)
        return (ref.owner_type, ref.owner_id) if ref is not None else None

    # --- text -----------------------------------------------------------------------------

    async def reply(self, update: Update, context: Context) -> None:
        message = update.effective_message
        rep = await self._rep_or_decline(update)
        if rep is None or message is None or message.reply_to_message is None:
            return
        target = message.reply_to_message
        text = message.text or ""
        pending = await self.crm.prompts.take(message.chat_id, target.message_id)
        if pending is not None:
            await self._answer_prompt(update, rep, message, pending, text)
            return
        owner = await self._owner(target)
        if owner is None:
            await message.reply_text("Reply to a lead or deal card to add a comment to it.")
            return
        try:
            await self.crm.activities.comment(owner[0], owner[1], text, actor_of(rep))
        except Forbidden as err:
            self._refused(update, rep, f"a comment on {owner[0]} #{owner[1]}", err)
            await message.reply_text(sentence(err))
            return
        except CrmError as err:
            await message.reply_text(sentence(err))
            return
        await message.reply_text(f"💬 Comment added to {owner[0]} #{owner[1]}.")
        await self.actions.tell_owner(rep, owner, f"💬 {text}")

    async def _answer_prompt(
        self,
        update: Update,
        rep: RepView,
        message: Message,
        pending: OpenPrompt,
        text: str,
    ) -> None:
        action, ref, card_id = pending.action, pending.ref, pending.card_id
        try:
            outcome = await self.actions.typed(action, ref, text, rep, pending.headline)
        except Forbidden as err:
            self._refused(update, rep, f"a typed {action} on {ref}", err)
            await message.reply_text(sentence(err))
            return
        except (CrmError, cb.StaleButton) as err:
            if message.reply_to_message is not None:  # let the rep try again
                await self.crm.prompts.open(pending)
            await message.reply_text(sentence(err))
            return
        await message.reply_text(outcome.toast or "Done.")
        if outcome.card is not None and card_id is not None:
            await edit_card(message.get_bot(), message.chat_id, card_id, outcome.card)
            record = _record_of(Press(cb.Button(action, ref), rep))
            await self._sync(message, record, card_id)
            await self.actions.tell_owner(rep, record, outcome.toast or "changed it")

    async def _sync(self, message: Message, record: tuple[str, int] | None, shown: int) -> None:
        """Redraw the record's other cards (other reps, older copies) after a change."""
        if record is not None and self.sync is not None:
            await self.sync.refresh(
                message.get_bot(), record[0], record[1], skip={(message.chat_id, shown)}
            )

    async def other(self, update: Update, context: Context) -> None:
        message = update.effective_message
        rep = await self._rep_or_decline(update)
        if rep is None or message is None:
            return
        if message.text and not message.text.startswith("/"):
            pending = await self.crm.prompts.take_next(message.chat_id)
            if pending is not None:
                await self._answer_prompt(update, rep, message, pending, message.text)
                return
        await message.reply_text(HINT)

    async def _web(self, rep: RepView, _args: list[str]) -> Rendered:
        """A one-time sign-in link (sent without a link preview: a preview fetch would use
        it up)."""
        if self.web_url is None:
            return Rendered(lists.NO_WEB)
        token = await self.crm.web_sessions.create_link(rep.id)
        url = views.esc(f"{self.web_url}/app/login/{token}")
        return Rendered(
            f'<a href="{url}">Open the web console</a> — the link works once, for 10 minutes.'
            f"\n{url}"
        )

    async def error(self, update: object, context: Context) -> None:
        log.error("bot handler failed on %s", type(update).__name__, exc_info=context.error)


async def _reply(message: Message, rendered: Rendered, quote: bool = False) -> None:
    await message.reply_text(
        rendered.text,
        parse_mode=ParseMode.HTML,
        reply_markup=markup(rendered),
        link_preview_options=NO_PREVIEW,
        do_quote=quote,
    )


async def _edit(message: Message, rendered: Rendered) -> None:
    await edit_card(message.get_bot(), message.chat_id, message.message_id, rendered)


def _ignore_unchanged(err: BadRequest) -> None:
    """Redrawing a card that did not change is fine; anything else is worth a log line."""
    if "not modified" not in str(err).lower():
        log.warning("could not edit a card: %s", err)


def commands_menu(role: str = "rep") -> Sequence[tuple[str, str]]:
    """The command list registered with setMyCommands."""
    base = [
        ("leads", "My open leads"),
        ("lead", "Show a lead: /lead N"),
        ("deals", "My open deals"),
        ("find", "Find by phone, e-mail or name"),
        ("today", "Call-backs due today and overdue"),
        ("web", "A sign-in link for the web console"),
        ("stats", "Numbers and charts: /stats today | week | month"),
        ("history", "A record's history: /history lead N"),
        ("help", "What this bot does"),
    ]
    if role in ("supervisor", "admin"):
        base.insert(3, ("team", "The team: open work per rep"))
    if role == "admin":
        base += [("exceptions", "The exception list"), ("settings", "CRM settings")]
    return base
