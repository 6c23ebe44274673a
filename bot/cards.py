"""Loading what a card shows from the CRM; rendering stays in `bot.views`.

A card can always be rebuilt from the record alone (the decision reason is in the record's
timeline, the message is its latest inbound activity), so an action re-renders the card in
place without knowing which notification first showed it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

from bot.views import (
    CardContext,
    Rendered,
    ReplyTarget,
    Viewer,
    contact_card,
    deal_card,
    lead_card,
)
from crm.dto import (
    SYSTEM,
    ActivityView,
    Actor,
    CommView,
    CompanyView,
    ContactView,
    DealView,
    LeadView,
)
from crm.facade import Crm
from matching.channels import CHANNELS, activity_kinds, spec_of
from matching.model import CommKind

INBOUND = activity_kinds()  # what the channels leave: a card quotes the latest one


def open_followups(acts: Sequence[ActivityView]) -> tuple[ActivityView, ...]:
    """Open call-back tasks (from missed calls) and scheduled calls, oldest first."""
    return tuple(
        a
        for a in acts
        if not a.done and ((a.meta or {}).get("callback") or (a.kind == "call" and a.due_at))
    )


def _address(kind: CommKind | None, comms: Sequence[CommView], used: str | None) -> str | None:
    """The customer's communication of `kind`: the one they wrote from when the record still
    has it, else the newest."""
    values = [c.value or c.raw for c in comms if kind is not None and c.kind == kind.value]
    return used if used is not None and used in values else next(reversed(values), None)


def reply_target(
    acts: Sequence[ActivityView], comms: Sequence[CommView], channels: Collection[str]
) -> ReplyTarget | None:
    """Where a rep's answer goes: the channel of the customer's latest inbound contact among
    those that can answer (`channels`), addressed by the registry's reply kind. A record
    nobody wrote to yet is still reachable through a messenger handle it holds (the handle
    names the channel; a phone number or address does not)."""
    for act in reversed(acts):
        spec = spec_of(act.channel or "")
        if act.direction == "outgoing" or spec is None or act.channel not in channels:
            continue
        to = _address(spec.reply_kind, comms, act.counterparty)
        if to is not None:
            return ReplyTarget(spec.channel.value, to, act)
    for spec in CHANNELS.values():
        if spec.channel.value in channels and spec.handle_kind is spec.reply_kind:
            to = _address(spec.handle_kind, comms, None)
            if to is not None:
                return ReplyTarget(spec.channel.value, to)
    return None


def latest_inbound(acts: Sequence[ActivityView]) -> ActivityView | None:
    """The customer's latest contact: what a channel left (a rep's own scheduled call is a
    "call" too, but it has no channel and must not push the customer's words off the card)."""
    return next(
        (
            a
            for a in reversed(acts)
            if a.kind in INBOUND and a.channel is not None and a.direction != "outgoing"
        ),
        None,
    )


@dataclass(frozen=True, slots=True)
class Card:
    """A loaded record and its context; render it once per viewer (buttons differ by role)."""

    kind: str  # lead | deal | contact
    ident: int
    ctx: CardContext
    lead: LeadView | None = None
    deal: DealView | None = None
    contact: ContactView | None = None
    company: CompanyView | None = None  # a deal's client when it has no contact

    @property
    def responsible_id(self) -> int | None:
        if self.lead is not None:
            return self.lead.responsible_id
        if self.deal is not None:
            return self.deal.responsible_id
        return self.contact.responsible_id if self.contact else None

    def with_headline(self, headline: str | None) -> Card:
        return replace(self, ctx=replace(self.ctx, headline=headline))


class Cards:
    def __init__(self, crm: Crm, tz: tzinfo, reply_channels: Collection[str] = ()) -> None:
        self.crm = crm
        self.tz = tz
        # Channels a rep's answer can go out through (the live keys of the bot's senders).
        self.reply_channels = reply_channels

    def _reply(self, acts: Sequence[ActivityView], comms: Sequence[CommView]) -> ReplyTarget | None:
        return reply_target(acts, comms, self.reply_channels)

    async def load(
        self,
        kind: str,
        ident: int,
        actor: Actor = SYSTEM,
        *,
        headline: str | None = None,
        reason: str | None = None,
        activity_id: int | None = None,
    ) -> Card:
        """Load a lead, deal or contact card; rights are checked for `actor`."""
        if kind == "lead":
            lead = await self.crm.leads.get(ident, actor)
            ctx, acts = await self._context("lead", ident, actor, headline, reason, activity_id)
            if lead.is_return_customer:
                history = await self.crm.leads.history(ident, actor)
                ctx = replace(ctx, history=tuple(history))
            # A repeat lead has no name or comms of its own: its client's are shown and used.
            client = (
                await self.crm.records.get_contact(lead.contact_id)
                if lead.contact_id is not None
                else None
            )
            reply = self._reply(acts, lead.comms)
            if reply is None and client is not None:
                reply = self._reply(acts, client.comms)
            return Card("lead", ident, replace(ctx, reply=reply), lead=lead, contact=client)
        if kind == "deal":
            deal = await self.crm.deals.get(ident, actor)
            ctx, acts = await self._context("deal", ident, actor, headline, reason, activity_id)
            return await self._deal(deal, ctx, acts)
        if kind == "contact":
            contact = await self.crm.records.get_contact(ident, actor)
            ctx, acts = await self._context("contact", ident, actor, headline, reason, activity_id)
            reply = self._reply(acts, contact.comms)
            return Card("contact", ident, replace(ctx, reply=reply), contact=contact)
        raise ValueError(f"no card for a {kind}")

    async def _deal(self, deal: DealView, ctx: CardContext, acts: list[ActivityView]) -> Card:
        contact = await self.crm.records.get_contact(deal.contact_id) if deal.contact_id else None
        # A deal made for a company alone: the company is the client the card shows.
        company = (
            await self.crm.records.get_company(deal.company_id)
            if contact is None and deal.company_id is not None
            else None
        )
        client = contact or company
        ctx = replace(ctx, reply=self._reply(acts, client.comms) if client is not None else None)
        return Card("deal", deal.id, ctx, deal=deal, contact=contact, company=company)

    async def _context(
        self,
        kind: str,
        ident: int,
        actor: Actor,
        headline: str | None,
        reason: str | None,
        activity_id: int | None,
    ) -> tuple[CardContext, list[ActivityView]]:
        acts = await self.crm.activities.of_record(kind, ident, actor, limit=200, newest=True)
        message = next((a for a in acts if a.id == activity_id), None) or latest_inbound(acts)
        if reason is None and kind != "contact":
            created = [
                t
                for t in await self.crm.activities.timeline(kind, ident, actor)
                if t.action == "created" and t.after and t.after.get("reason")
            ]
            reason = str(created[0].after["reason"]) if created and created[0].after else None
        ctx = CardContext(
            headline=headline, reason=reason, message=message, tasks=open_followups(acts)
        )
        return ctx, acts

    def render(self, card: Card, viewer: Viewer, now: datetime) -> Rendered:
        if card.lead is not None:
            statuses = self.crm.config.lead_statuses
            return lead_card(
                card.lead, card.ctx, viewer, statuses, self.tz, now, client=card.contact
            )
        if card.deal is not None:
            client = card.contact or card.company
            return deal_card(card.deal, client, card.ctx, viewer, self.tz, now)
        assert card.contact is not None
        return contact_card(card.contact, card.ctx, self.tz, now)
