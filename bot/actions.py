"""What an inline button does: one CRM use case, then the new state rendered.

The CRM re-checks the rep's rights on every call; a button is only a request. Menus load the
record with the rep's rights too, so a forged button never even shows another rep's menu.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo

from bot import callbacks as cb
from bot import lists, menus, views
from bot.callbacks import Button, StaleButton
from bot.cards import Cards, open_followups
from bot.clock import Clock
from bot.commands import Commands, actor_of
from bot.relay import Relay, channel_label
from bot.views import (
    Rendered,
    Row,
    Viewer,
)
from bot.when import HINT, parse_when, preset
from crm.dto import DealView, RepView
from crm.errors import Conflict, CrmError, Forbidden, InvalidInput
from crm.facade import Crm
from crm.money import EXAMPLES, parse_money

# "da": into a deal, then ask its amount (the optional step of converting).
CONVERT_INTO = {"c": ("contact",), "cc": ("contact", "company"), "d": ("deal",), "da": ("deal",)}


@dataclass(frozen=True, slots=True)
class Prompt:
    """Ask the rep to type something; their reply to the prompt finishes the action."""

    text: str
    placeholder: str
    action: str
    ref: str


@dataclass(frozen=True, slots=True)
class Outcome:
    toast: str | None = None  # the short answer on the button press
    card: Rendered | None = None  # replaces the pressed message, text and keyboard
    rows: list[Row] | None = None  # replaces only the keyboard (menus)
    send: Rendered | None = None  # sent as a new message
    prompt: Prompt | None = None


@dataclass(frozen=True, slots=True)
class Press:
    button: Button
    rep: RepView
    headline: str | None = None  # first line of the pressed card, kept when it is redrawn
    owner: tuple[str, int] | None = None  # the record the pressed card shows


Action = Callable[[Press], Awaitable[Outcome]]


class Actions:
    def __init__(
        self,
        crm: Crm,
        cards: Cards,
        commands: Commands,
        clock: Clock,
        tz: tzinfo,
        junk_reasons: tuple[str, ...],
        queued: Callable[[], None] = lambda: None,
        relay: Relay | None = None,
    ) -> None:
        self.crm = crm
        self.cards = cards
        self.commands = commands
        self.clock = clock
        self.tz = tz
        self.junk_reasons = junk_reasons
        self.queued = queued
        self.relay = relay
        self.table: dict[str, Action] = {
            cb.TAKE: self.take,
            cb.CALLBACK_MENU: self.callback_menu,
            cb.CALLBACK: self.callback,
            cb.DONE: self.done,
            cb.STATUS_MENU: self.status_menu,
            cb.STATUS: self.status,
            cb.CONVERT_MENU: self.convert_menu,
            cb.CONVERT: self.convert,
            cb.JUNK_MENU: self.junk_menu,
            cb.JUNK: self.junk,
            cb.JUNK_TYPED: self.junk_typed,
            cb.REASSIGN_MENU: self.reassign_menu,
            cb.REASSIGN: self.reassign,
            cb.EXCEPT_MENU: self.except_menu,
            cb.EXCEPT: self.except_sender,
            cb.BACK: self.back,
            cb.OPEN: self.open,
            cb.STAGE_MENU: self.stage_menu,
            cb.STAGE: self.stage,
            cb.WIN: self.win,
            cb.LOSE: self.lose,
            cb.LOSE_TYPED: self.lose_typed,
            cb.REOPEN: self.reopen,
            cb.LEADS_PAGE: self.leads_page,
            cb.DEALS_PAGE: self.deals_page,
            cb.SETTING: self.setting,
            cb.REPLY: self.reply,
            cb.HISTORY: self.history,
            cb.AMOUNT: self.amount,
            cb.SNOOZE: self.snooze,
        }

    async def run(self, press: Press) -> Outcome:
        return await self.table[press.button.action](press)

    async def redraw(self, press: Press) -> Rendered | None:
        """The pressed card as it is now (after a refused or stale press), if it is a card."""
        try:
            kind, ident = press.owner or press.button.record
            if kind == "activity":
                return None
            return await self._card(press, kind, ident)
        except (StaleButton, CrmError):
            return None

    # --- helpers ----------------------------------------------------------------------------

    async def _card(
        self, press: Press, kind: str, ident: int, headline: str | None = None
    ) -> Rendered:
        card = await self.cards.load(
            kind, ident, actor_of(press.rep), headline=headline or press.headline
        )
        return self.cards.render(card, Viewer(press.rep.id, press.rep.role), self.clock.now())

    def _lead(self, press: Press) -> int:
        kind, ident = press.button.record
        if kind != "lead":
            raise StaleButton("this button belongs to a lead card")
        return ident

    def _deal(self, press: Press) -> int:
        kind, ident = press.button.record
        if kind != "deal":
            raise StaleButton("this button belongs to a deal card")
        return ident

    # --- leads ------------------------------------------------------------------------------

    async def take(self, press: Press) -> Outcome:
        lead_id = self._lead(press)
        actor = actor_of(press.rep)
        lead = await self.crm.leads.get(lead_id, actor)
        if lead.responsible_id == press.rep.id and lead.taken_at is not None:
            return Outcome("You have this lead already.", await self._card(press, "lead", lead_id))
        if not lead.is_open:
            raise Conflict(f"lead #{lead_id} is closed already ({lead.status_name})")
        await self.crm.leads.take(lead_id, actor)
        return Outcome("✋ The lead is yours.", await self._card(press, "lead", lead_id))

    async def status_menu(self, press: Press) -> Outcome:
        lead = await self.crm.leads.get(self._lead(press), actor_of(press.rep))
        if not lead.is_open:
            raise Conflict(f"lead #{lead.id} is closed ({lead.status_name})")
        return Outcome(rows=menus.status_menu(lead, self.crm.config.lead_statuses))

    async def status(self, press: Press) -> Outcome:
        lead_id = self._lead(press)
        lead = await self.crm.leads.change_status(lead_id, press.button.arg, actor_of(press.rep))
        return Outcome(f"Status: {lead.status_name}", await self._card(press, "lead", lead_id))

    async def convert_menu(self, press: Press) -> Outcome:
        lead = await self.crm.leads.get(self._lead(press), actor_of(press.rep))
        if not lead.is_open:
            raise Conflict(f"lead #{lead.id} is closed already ({lead.status_name})")
        return Outcome(rows=menus.convert_menu(lead))

    async def convert(self, press: Press) -> Outcome:
        lead_id = self._lead(press)
        into = CONVERT_INTO.get(press.button.arg)
        if into is None:
            raise StaleButton(f"unknown conversion {press.button.arg!r}")
        result = await self.crm.leads.convert(lead_id, actor_of(press.rep), into=into)
        if result.deal is not None:
            headline = f"✅ Lead #{lead_id} converted into deal #{result.deal.id}"
            ask = self._amount_prompt(result.deal) if press.button.arg == "da" else None
            return Outcome(
                f"Converted into deal #{result.deal.id}",
                await self._card(press, "deal", result.deal.id, headline),
                prompt=ask,
            )
        made = ", ".join(
            f"{k} #{v}"
            for k, v in (("contact", result.contact_id), ("company", result.company_id))
            if v
        )
        headline = f"✅ Lead #{lead_id} converted: {made}"
        return Outcome(f"Converted: {made}", await self._card(press, "lead", lead_id, headline))

    async def junk_menu(self, press: Press) -> Outcome:
        lead = await self.crm.leads.get(self._lead(press), actor_of(press.rep))
        if not lead.is_open:
            raise Conflict(f"lead #{lead.id} is closed already ({lead.status_name})")
        return Outcome(rows=menus.junk_menu(lead, self.junk_reasons))

    async def junk(self, press: Press, reason: str | None = None) -> Outcome:
        lead_id = self._lead(press)
        if reason is None:
            arg = press.button.arg
            if not arg.isdigit() or int(arg) >= len(self.junk_reasons):
                raise StaleButton("this reason is no longer offered")
            reason = self.junk_reasons[int(arg)]
        await self.crm.leads.junk(lead_id, reason, actor_of(press.rep))
        return Outcome(f"🗑 Junk: {reason}", await self._card(press, "lead", lead_id))

    async def junk_typed(self, press: Press) -> Outcome:
        lead = await self.crm.leads.get(self._lead(press), actor_of(press.rep))
        text = f"Why is lead #{lead.id} junk? Reply to this message with the reason."
        return Outcome(prompt=Prompt(text, "the reason", cb.JUNK_TYPED, press.button.ref))

    async def reassign_menu(self, press: Press) -> Outcome:
        if press.rep.role not in ("supervisor", "admin"):
            raise Forbidden("only a supervisor can reassign a lead")
        lead = await self.crm.leads.get(self._lead(press), actor_of(press.rep))
        reps = await self.crm.reps.all(include_inactive=False)
        return Outcome(rows=menus.reassign_menu(lead, reps))

    async def reassign(self, press: Press) -> Outcome:
        lead_id = self._lead(press)
        if not press.button.arg.isdigit():
            raise StaleButton("unknown rep")
        rep_id = int(press.button.arg)
        # The service refuses a rep (Forbidden: the polite answer) before anything changes,
        # and queues the new holder's "Assigned to you" with the change.
        lead = await self.crm.leads.assign(lead_id, rep_id, actor_of(press.rep))
        self.queued()
        return Outcome(
            f"Reassigned to {lead.responsible_name}", await self._card(press, "lead", lead_id)
        )

    async def except_menu(self, press: Press) -> Outcome:
        if press.rep.role not in ("supervisor", "admin"):
            raise Forbidden("only a supervisor or an admin can change the exception list")
        lead = await self.crm.leads.get(self._lead(press), actor_of(press.rep))
        return Outcome(rows=menus.except_menu(lead))

    async def except_sender(self, press: Press) -> Outcome:
        lead_id = self._lead(press)
        comment = f"from lead #{lead_id} by {press.rep.name}"
        added = await self.crm.exceptions.add_from_lead(lead_id, comment, actor_of(press.rep))
        listed = ", ".join(e.value for e in added) or "already listed"
        return Outcome(
            f"⛔ Never captured again: {listed}. The lead stays.",
            await self._card(press, "lead", lead_id),
        )

    # --- call-backs ---------------------------------------------------------------------------

    async def callback_menu(self, press: Press) -> Outcome:
        kind, ident = press.button.record
        await self.cards.load(kind, ident, actor_of(press.rep))  # rights, and that it exists
        return Outcome(rows=menus.callback_menu(kind, ident))

    async def callback(self, press: Press) -> Outcome:
        kind, ident = press.button.record
        if press.button.arg == "x":  # ask for a time; the rights are checked before asking
            await self.crm.activities.of_record(kind, ident, actor_of(press.rep), limit=1)
            text = (
                f"When should I remind you to call back ({kind} #{ident})? "
                f"Reply with a time, {HINT}."
            )
            return Outcome(prompt=Prompt(text, "16:30", cb.CALLBACK, press.button.ref))
        try:
            due = preset(press.button.arg, self.clock.now(), self.tz)
        except ValueError:
            raise StaleButton("this call-back choice is no longer offered") from None
        return await self.schedule(press, kind, ident, due)

    async def schedule(self, press: Press, kind: str, ident: int, due: datetime) -> Outcome:
        await self.crm.activities.schedule(
            kind, ident, due_at=due, subject="Call back", kind="call", actor=actor_of(press.rep)
        )
        when = views.local(due, self.tz, self.clock.now())
        return Outcome(f"⏰ I will remind you at {when}.", await self._card(press, kind, ident))

    async def snooze(self, press: Press) -> Outcome:
        """Remind again later (the reminder's 😴 buttons); the card shows the new time."""
        kind, ident = press.button.record
        if kind != "activity":
            raise StaleButton("this button belongs to a task")
        try:
            due = preset(press.button.arg, self.clock.now(), self.tz)
        except ValueError:
            raise StaleButton("this snooze choice is no longer offered") from None
        act = await self.crm.activities.snooze(ident, due, actor_of(press.rep))
        owners = [(t, i) for t, i in act.bindings if t in ("deal", "lead", "contact")]
        target = press.owner or (owners[0] if owners else None)
        card = await self._card(press, *target) if target else None
        when = views.local(due, self.tz, self.clock.now())
        return Outcome(f"😴 I will remind you again at {when}.", card)

    async def done(self, press: Press) -> Outcome:
        kind, ident = press.button.record
        if kind != "activity":
            raise StaleButton("this button belongs to a task")
        actor = actor_of(press.rep)
        act = await self.crm.activities.complete(ident, actor, result="called back")
        # The rep called the customer back: every other open call-back of the record is
        # answered by the same call.
        owners = [(t, i) for t, i in act.bindings if t in ("deal", "lead")]
        for owner_type, owner_id in owners:
            still_open = await self.crm.activities.of_record(
                owner_type, owner_id, limit=1000, open_only=True
            )
            for other in open_followups(still_open):
                with contextlib.suppress(Conflict, Forbidden):
                    await self.crm.activities.complete(other.id, actor, result="called back")
        if press.button.arg == "t":
            return Outcome("✅ Done.", await self.commands.today(press.rep))
        target = press.owner or (owners[0] if owners else None)
        card = await self._card(press, *target) if target else None
        return Outcome("✅ Done.", card)

    # --- deals ----------------------------------------------------------------------------------

    async def stage_menu(self, press: Press) -> Outcome:
        deal = await self.crm.deals.get(self._deal(press), actor_of(press.rep))
        if not deal.is_open:
            raise Conflict(f"deal #{deal.id} is closed ({deal.stage_name})")
        return Outcome(rows=menus.stage_menu(deal, await self.crm.deals.stages(deal.pipeline)))

    async def stage(self, press: Press) -> Outcome:
        deal_id = self._deal(press)
        actor = actor_of(press.rep)
        current = await self.crm.deals.get(deal_id, actor)
        if not current.is_open:
            raise Conflict(f"deal #{deal_id} is closed ({current.stage_name})")
        deal = await self.crm.deals.move(deal_id, press.button.arg, actor)
        return Outcome(f"Stage: {deal.stage_name}", await self._card(press, "deal", deal_id))

    async def win(self, press: Press) -> Outcome:
        return await self._close(press, won=True)

    async def lose(self, press: Press, reason: str | None = None) -> Outcome:
        """✖ Lost asks why (the configured reasons, or typed); a reason closes the deal."""
        arg, reasons = press.button.arg, self.crm.config.lost_reasons
        if reason is None and not arg:
            deal = await self._open_deal(press)
            return Outcome(rows=menus.lost_menu(deal, reasons))
        if reason is None:
            if not arg.isdigit() or int(arg) >= len(reasons):
                raise StaleButton("this reason is no longer offered")
            reason = reasons[int(arg)]
        return await self._close(press, won=False, reason=reason)

    async def lose_typed(self, press: Press) -> Outcome:
        deal = await self._open_deal(press)
        text = f"Why was deal #{deal.id} lost? Reply to this message with the reason."
        return Outcome(prompt=Prompt(text, "the reason", cb.LOSE_TYPED, press.button.ref))

    async def _open_deal(self, press: Press) -> DealView:
        deal = await self.crm.deals.get(self._deal(press), actor_of(press.rep))
        if not deal.is_open:
            raise Conflict(f"deal #{deal.id} is closed already ({deal.stage_name})")
        return deal

    async def _close(self, press: Press, won: bool, reason: str | None = None) -> Outcome:
        deal_id = (await self._open_deal(press)).id
        actor = actor_of(press.rep)
        if won:
            deal = await self.crm.deals.win(deal_id, actor)
        else:
            deal = await self.crm.deals.lose(deal_id, actor, reason)
        why = f" — {deal.lost_reason}" if deal.lost_reason else ""
        return Outcome(
            f"Deal #{deal_id}: {deal.stage_name}{why}", await self._card(press, "deal", deal_id)
        )

    async def reopen(self, press: Press) -> Outcome:
        kind, ident = press.button.record
        actor = actor_of(press.rep)
        if kind == "deal":
            await self.crm.deals.reopen(ident, actor)
        elif kind == "lead":
            await self.crm.leads.reopen(ident, actor)
        else:
            raise StaleButton("nothing to reopen")
        return Outcome("↩ Reopened.", await self._card(press, kind, ident))

    async def amount(self, press: Press) -> Outcome:
        deal = await self.crm.deals.get(self._deal(press), actor_of(press.rep))
        return Outcome(prompt=self._amount_prompt(deal))

    @staticmethod
    def _amount_prompt(deal: DealView) -> Prompt:
        now = f" (now {views.money(deal.amount, deal.currency)})" if deal.amount is not None else ""
        text = (
            f"How much is deal #{deal.id} worth{now}? Reply with the amount, {EXAMPLES}; "
            f"without a currency it is {deal.currency}."
        )
        return Prompt(text, "1 200,50 EUR", cb.AMOUNT, cb.ref("deal", deal.id))

    async def set_amount(self, press: Press, text: str) -> Outcome:
        deal_id = self._deal(press)
        actor = actor_of(press.rep)
        current = await self.crm.deals.get(deal_id, actor)
        amount, currency = parse_money(text, current.currency)
        deal = await self.crm.deals.set_amount(deal_id, amount, actor, currency)
        shown = views.money(amount, deal.currency)
        return Outcome(f"💶 Deal #{deal_id}: {shown}", await self._card(press, "deal", deal_id))

    # --- answering the customer -----------------------------------------------------------------

    async def reply(self, press: Press) -> Outcome:
        kind, ident = press.button.record
        if self.relay is None:
            raise StaleButton("answering customers is not set up")
        target, person = await self.relay.target_of(press.rep, kind, ident)
        text = (
            f"Your message to {person} in {channel_label(target.channel)} ({kind} #{ident}): "
            "send it now as your next message. It goes to the customer exactly as you type it."
        )
        return Outcome(prompt=Prompt(text, "your answer", cb.REPLY, press.button.ref))

    # --- navigation -----------------------------------------------------------------------------

    async def history(self, press: Press) -> Outcome:
        """From a card: the newest page as a new message; ◀ ▶ page it in place."""
        kind, ident = press.button.record
        arg = press.button.arg
        if arg and not arg.isdigit():
            raise StaleButton("bad page")
        page = int(arg or 0)
        shown = await self.commands.history_page(press.rep, kind, ident, page)
        return Outcome(card=shown) if arg else Outcome(send=shown)

    async def back(self, press: Press) -> Outcome:
        kind, ident = press.button.record
        return Outcome(card=await self._card(press, kind, ident))

    async def open(self, press: Press) -> Outcome:
        kind, ident = press.button.record
        card = await self.cards.load(kind, ident, actor_of(press.rep))
        return Outcome(
            send=self.cards.render(card, Viewer(press.rep.id, press.rep.role), self.clock.now())
        )

    async def leads_page(self, press: Press) -> Outcome:
        offset = _offset(press.button.ref)
        return Outcome(card=await self.commands.leads(press.rep, press.button.arg.split(), offset))

    async def deals_page(self, press: Press) -> Outcome:
        offset = _offset(press.button.ref)
        return Outcome(card=await self.commands.deals(press.rep, press.button.arg.split(), offset))

    async def setting(self, press: Press) -> Outcome:
        name, value = press.button.ref, press.button.arg
        actor = actor_of(press.rep)
        if name == "m":
            new = await self.crm.settings.update(actor, crm_mode=value)
        elif name == "r":
            new = await self.crm.settings.update(actor, repeat_sales=value == "1")
        elif name == "t":
            new = await self.crm.settings.update(actor, traditional_mode=value == "1")
        else:
            raise StaleButton("unknown setting")
        return Outcome("Saved.", lists.settings_view(new))

    # --- telling the holder -------------------------------------------------------------------

    async def tell_owner(self, rep: RepView, record: tuple[str, int] | None, what: str) -> None:
        """Someone else worked a rep's lead or deal: its holder hears who and what, in the
        bot's words (the button's answer or the comment); the CRM decides whether to tell."""
        if record is not None and await self.crm.outbox.tell_holder(*record, rep.id, what):
            self.queued()

    # --- typed answers to prompts -------------------------------------------------------------

    async def typed(
        self, prompt_action: str, ref: str, text: str, rep: RepView, headline: str | None = None
    ) -> Outcome:
        """The rep replied to a prompt: finish the action it asked for (the card keeps
        `headline`, its first line when the prompt was asked)."""
        press = Press(Button(prompt_action, ref), rep, headline)
        kind, ident = press.button.record
        if prompt_action == cb.JUNK_TYPED:
            reason = text.strip()[:500]
            if not reason:
                raise InvalidInput("the reason is empty")
            return await self.junk(press, reason)
        if prompt_action == cb.LOSE_TYPED:
            if not text.strip():
                raise InvalidInput("the reason is empty")
            return await self.lose(press, text.strip()[:500])
        if prompt_action == cb.CALLBACK:
            try:
                due = parse_when(text, self.clock.now(), self.tz)
            except ValueError as err:
                raise InvalidInput(str(err)) from None
            return await self.schedule(press, kind, ident, due)
        if prompt_action == cb.AMOUNT:
            return await self.set_amount(press, text)
        if prompt_action == cb.REPLY and self.relay is not None:
            toast = await self.relay.send(rep, kind, ident, text)
            return Outcome(toast, await self._card(press, kind, ident))
        raise StaleButton("nothing is waiting for this answer")


def _offset(ref: str) -> int:
    if not ref.isdigit():
        raise StaleButton("bad page")
    return int(ref)
