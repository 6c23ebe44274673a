"""Menus that replace a card's keyboard for one choice (status, convert, junk, reassign,
exception list, call-back time, deal stage); BACK restores the card."""

from __future__ import annotations

from collections.abc import Sequence

from bot import callbacks as cb
from bot.views import (
    Row,
    clip,
)
from crm.config import StatusDef
from crm.dto import DealView, LeadView, RepView


def _back(r: str) -> Row:
    return [("« Back", cb.encode(cb.BACK, r))]


def status_menu(lead: LeadView, statuses: Sequence[StatusDef]) -> list[Row]:
    r = cb.ref("lead", lead.id)
    rows: list[Row] = []
    for s in statuses:
        if s.semantic != "process" or s.code == lead.status:
            continue
        try:
            rows.append([(s.name, cb.encode(cb.STATUS, r, s.code))])
        except ValueError:  # a status code too long for a button payload
            continue
    return [*rows, _back(r)]


DEAL_WITH_AMOUNT = ("💼 Deal + amount…", "da")


def convert_menu(lead: LeadView) -> list[Row]:
    r = cb.ref("lead", lead.id)
    if lead.is_return_customer or lead.contact_id or lead.company_id:
        options = [("💼 Deal", "d"), DEAL_WITH_AMOUNT]  # a repeat lead only becomes a deal
    else:
        options = [
            ("👤 Contact", "c"),
            ("👤+🏢 Contact + company", "cc"),
            ("💼 Deal", "d"),
            DEAL_WITH_AMOUNT,
        ]
    return [[(label, cb.encode(cb.CONVERT, r, arg))] for label, arg in options] + [_back(r)]


def junk_menu(lead: LeadView, reasons: Sequence[str]) -> list[Row]:
    r = cb.ref("lead", lead.id)
    rows = [[(reason, cb.encode(cb.JUNK, r, str(i)))] for i, reason in enumerate(reasons)]
    return [*rows, [("✍ Other reason…", cb.encode(cb.JUNK_TYPED, r))], _back(r)]


def lost_menu(deal: DealView, reasons: Sequence[str]) -> list[Row]:
    r = cb.ref("deal", deal.id)
    rows = [[(clip(reason, 40), cb.encode(cb.LOSE, r, str(i)))] for i, reason in enumerate(reasons)]
    return [*rows, [("✍ Other reason…", cb.encode(cb.LOSE_TYPED, r))], _back(r)]


def reassign_menu(lead: LeadView, reps: Sequence[RepView]) -> list[Row]:
    r = cb.ref("lead", lead.id)
    rows = [
        [(clip(rep.name, 40), cb.encode(cb.REASSIGN, r, str(rep.id)))]
        for rep in reps
        if rep.active and rep.id != lead.responsible_id
    ]
    return [*rows, _back(r)]


def except_menu(lead: LeadView) -> list[Row]:
    r = cb.ref("lead", lead.id)
    return [[("⛔ Yes, never capture this sender", cb.encode(cb.EXCEPT, r))], _back(r)]


CALLBACK_CHOICES = (("In 15 min", "15"), ("In 1 hour", "60"), ("Tomorrow 9:00", "t9"))


def callback_menu(kind: str, ident: int) -> list[Row]:
    r = cb.ref(kind, ident)
    rows = [[(label, cb.encode(cb.CALLBACK, r, arg))] for label, arg in CALLBACK_CHOICES]
    return [*rows, [("✍ Other time…", cb.encode(cb.CALLBACK, r, "x"))], _back(r)]


def stage_menu(deal: DealView, stages: Sequence[tuple[str, str, str]]) -> list[Row]:
    r = cb.ref("deal", deal.id)
    rows: list[Row] = []
    for code, name, semantic in stages:
        if semantic != "process" or code == deal.stage:
            continue
        try:
            rows.append([(name, cb.encode(cb.STAGE, r, code))])
        except ValueError:
            continue
    return [*rows, _back(r)]
