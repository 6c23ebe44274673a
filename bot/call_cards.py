"""The call card: Bitrix24's screen pop for a ringing call, as a Telegram message from the rep bot.

The phone system asks for it (`telephony.externalcall.register` with SHOW, `.show`) and takes it
away (`.hide`, `.finish`); both arrive as outbox rows for one rep each (`call_shown`,
`call_hidden`), so a rep's card is always removed after it was shown. A card names the number
and the caller's records with buttons that open them; it is deleted when hidden.

A card Telegram refuses (400) goes once more without buttons or as plain text, like an outbox
card (`bot.sending.deliver_card`), and is counted in the same metrics. Unlike an outbox card it
is never offered to the supervisors: it is the rep's own screen pop for a call ringing now,
worthless to anybody else and stale by the time anyone could act on it; the call itself is a
record with its own card.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from telegram import Bot
from telegram.error import BadRequest, Forbidden

from bot import callbacks as cb
from bot.sending import Undeliverable, deliver_card, fallback_note
from bot.views import (
    Rendered,
    Row,
    clip,
    esc,
)
from crm.errors import NotFound
from crm.facade import Crm
from crm.services.external_calls import CARD_HIDDEN, CARD_OWNER, CARD_SHOWN
from crm.services.outbox import CardRef, OutboxItem

if TYPE_CHECKING:  # the notifier imports this module
    from bot.notifier import CardCounters

log = logging.getLogger(__name__)

KINDS = (CARD_SHOWN, CARD_HIDDEN)
MAX_RECORDS = 4
LABEL_CHARS = 80
_NAMES = {"deal": "Deal", "lead": "Lead", "contact": "Contact", "company": "Company"}


def _records(payload: dict[str, Any]) -> list[tuple[str, int, str]]:
    out: list[tuple[str, int, str]] = []
    raw = payload.get("records")
    for item in raw if isinstance(raw, list) else []:
        if not (isinstance(item, list) and len(item) == 3 and item[0] in _NAMES):
            continue
        if isinstance(item[1], int) and not isinstance(item[1], bool):
            out.append((item[0], item[1], str(item[2] or "")))
    return out[:MAX_RECORDS]


def call_card(payload: dict[str, Any]) -> Rendered:
    """📞 who is calling: the number, the line, the caller's records and their rep."""
    number = str(payload.get("phone") or "unknown number")
    incoming = payload.get("incoming") is not False
    head = "📞 <b>Incoming call</b> from " if incoming else "📞 <b>Outgoing call</b> to "
    lines = [head + f"<code>{esc(clip(number, 64))}</code>"]
    if payload.get("line"):
        lines.append(f"Line {esc(clip(str(payload['line']), 64))}")
    records = _records(payload)
    for kind, ident, label in records:
        named = f": {esc(clip(label, LABEL_CHARS))}" if label else ""
        lines.append(f"{_NAMES[kind]} #{ident}{named}")
    if not records:
        lines.append("Not in the CRM yet.")
    if payload.get("responsible"):
        lines.append(f"Rep: {esc(clip(str(payload['responsible']), LABEL_CHARS))}")
    buttons: Row = [
        (f"{_NAMES[kind]} #{ident}", cb.encode(cb.OPEN, cb.ref(kind, ident)))
        for kind, ident, _ in records
        if kind in cb.LETTERS
    ]
    return Rendered("\n".join(lines), [buttons] if buttons else [])


class CallCards:
    """Delivers `call_shown` / `call_hidden` outbox rows (see `bot.notifier.Notifier`)."""

    def __init__(self, crm: Crm, bot: Bot, counters: CardCounters) -> None:
        self.crm = crm
        self.bot = bot
        self.counters = counters

    async def deliver(self, item: OutboxItem) -> None:
        if item.kind == CARD_SHOWN:
            await self._show(item)
        else:
            await self._hide(item)

    async def _show(self, item: OutboxItem) -> None:
        ref = item.payload.get("call_ref")
        if item.rep_id is None or not isinstance(ref, int):
            await self.crm.outbox.give_up(item.id, "call card without a rep or a call")
            return
        try:
            rep = await self.crm.reps.get(item.rep_id)
        except NotFound:
            rep = None
        # Only the rep on the call: a screen pop is no use to anybody else.
        if rep is None or not rep.active or rep.telegram_user_id is None:
            await self.crm.outbox.give_up(item.id, "the rep cannot be reached in Telegram")
            return
        try:
            sent = await deliver_card(self.bot, rep.telegram_user_id, call_card(item.payload))
        except Undeliverable as err:  # blocked, or refused in every form: nobody else gets it
            log.warning("outbox #%s: call card for rep #%s not sent: %s", item.id, rep.id, err)
            self.counters.undeliverable(err.reason)
            self.counters.dropped()
            await self.crm.outbox.give_up(item.id, err.description)
            return
        self.counters.sent(item.kind)
        note = fallback_note(sent, item.id, rep.id)
        if note is not None:
            self.counters.fallback(sent.form)
        card = CardRef(rep.id, rep.telegram_user_id, sent.message.message_id, CARD_OWNER, ref)
        await self.crm.outbox.mark_sent(item.id, [card], note)

    async def _hide(self, item: OutboxItem) -> None:
        ref = item.payload.get("call_ref")
        shown: Sequence[CardRef] = []
        if isinstance(ref, int):
            shown = await self.crm.outbox.cards_of(CARD_OWNER, ref)
        for card in shown:
            if card.rep_id != item.rep_id:
                continue
            try:
                await self.bot.delete_message(card.chat_id, card.message_id)
            except BadRequest as err:  # gone already, or too old for Telegram to delete
                log.info("call card %s/%s not deleted: %s", card.chat_id, card.message_id, err)
            except Forbidden as err:
                log.info("call card %s/%s: rep unreachable: %s", card.chat_id, card.message_id, err)
        await self.crm.outbox.mark_sent(item.id, [])
