"""Lists and texts a rep asks for: open leads and deals (paged), search results, today's
call-backs, the exception list, the settings, help."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from bot import callbacks as cb
from bot.views import (
    LIST_ITEM_CHARS,
    Rendered,
    Row,
    _join,
    clip,
    esc,
    local,
    money,
    overdue,
)
from crm.dto import ActivityView, ContactView, DealView, ExceptionView, LeadView
from crm.services.team import TeamView
from matching.model import MatchSettings


def _pager(action: str, offset: int, limit: int, total: int, flt: str) -> Row:
    row: Row = []
    if offset > 0:
        row.append(("◀", cb.encode(action, str(max(offset - limit, 0)), flt)))
    if offset + limit < total:
        row.append(("▶", cb.encode(action, str(offset + limit), flt)))
    return row


def _open_rows(items: Sequence[tuple[str, int]], named: bool = False) -> list[Row]:
    """Open buttons; `named` when the list mixes kinds (lead #1 and deal #1 both exist)."""
    buttons = [
        (
            f"{kind.capitalize()} #{ident}" if named else f"#{ident}",
            cb.encode(cb.OPEN, cb.ref(kind, ident)),
        )
        for kind, ident in items
    ]
    per_row = 3 if named else 5
    return [buttons[i : i + per_row] for i in range(0, len(buttons), per_row)]


def _holder(name: str | None) -> str:
    return f" · {esc(clip(name, 40))}" if name else " · queue"


@dataclass(frozen=True, slots=True)
class Paging:
    """Where a list page is: `flt` rides in the pager buttons, `label` shows it (a rep's name
    for `@3`)."""

    total: int
    offset: int
    limit: int
    flt: str
    label: str | None = None


def _paged(
    title: str, empty: str, lines: list[str], refs: list[tuple[str, int]], action: str, p: Paging
) -> Rendered:
    shown = p.flt if p.label is None else p.label
    suffix = f" ({esc(shown)})" if shown else ""
    if not lines:
        return Rendered(f"{empty}{suffix}.")
    head = f"<b>{title}{suffix}</b> {p.offset + 1}–{p.offset + len(lines)} of {p.total}"
    pager = _pager(action, p.offset, p.limit, p.total, p.flt)
    return Rendered(_join([head, *lines]), _open_rows(refs) + ([pager] if pager else []))


def leads_list(leads: Sequence[LeadView], paging: Paging, owners: bool = False) -> Rendered:
    """`owners` names each lead's holder (a supervisor's list of everyone's)."""
    lines = []
    for lead in leads:
        repeat = "🔁 " if lead.is_return_customer else ""
        name = clip(lead.name or lead.title, LIST_ITEM_CHARS)
        holder = _holder(lead.responsible_name) if owners else ""
        lines.append(
            f"#{lead.id} {repeat}{esc(name)} · {esc(lead.status_name)} · {esc(lead.source)}"
            + holder
        )
    refs = [("lead", lead.id) for lead in leads]
    return _paged("Leads", "No leads", lines, refs, cb.LEADS_PAGE, paging)


def deals_list(deals: Sequence[DealView], paging: Paging, owners: bool = False) -> Rendered:
    lines = []
    for d in deals:
        amount = f" · {money(d.amount, d.currency)}" if d.amount is not None else ""
        holder = _holder(d.responsible_name) if owners else ""
        lines.append(
            f"#{d.id} {esc(clip(d.title, LIST_ITEM_CHARS))} · {esc(d.stage_name)}{amount}{holder}"
        )
    refs = [("deal", d.id) for d in deals]
    return _paged("Deals", "No open deals", lines, refs, cb.DEALS_PAGE, paging)


MAX_TEAM_BUTTONS = 20  # reps with list buttons; the text names everyone


def team_view(team: TeamView) -> Rendered:
    """`/team`: open work per rep and the queue, with buttons to each rep's lists."""
    lines = ["<b>👥 The team now</b>"]
    rows: list[Row] = []
    for r in team.reps:
        untaken = f" ({r.untaken} not taken)" if r.untaken else ""
        overdue = f" · ⚠️ overdue {r.overdue}" if r.overdue else ""
        lines.append(
            f"{esc(clip(r.rep_name, 40))}: leads {r.open_leads}{untaken} · deals {r.open_deals}"
            + overdue
        )
        if len(rows) < MAX_TEAM_BUTTONS and (r.open_leads or r.open_deals):
            name = clip(r.rep_name, 20)
            rows.append(
                [
                    (f"{name}: leads", cb.encode(cb.LEADS_PAGE, "0", f"@{r.rep_id}")),
                    (f"{name}: deals", cb.encode(cb.DEALS_PAGE, "0", f"@{r.rep_id}")),
                ]
            )
    if not team.reps:
        lines.append("No reps yet.")
    lines.append(f"Queue (nobody's): leads {team.queue_leads} · deals {team.queue_deals}")
    lines.append(f"Overdue call-backs, all: {team.overdue}")
    if team.queue_leads:
        rows.append([("Queue: leads", cb.encode(cb.LEADS_PAGE, "0", "queue"))])
    return Rendered(_join(lines), rows)


def search_results(
    query: str,
    contacts: Sequence[ContactView],
    companies: Sequence[tuple[int, str]],
    leads: Sequence[LeadView],
    deals: Sequence[DealView],
) -> Rendered:
    if not (contacts or companies or leads or deals):
        return Rendered(f"Nothing found for “{esc(clip(query, 80))}”.")
    lines = [f"<b>Found for “{esc(clip(query, 80))}”</b>"]
    for lead in leads:
        name = clip(lead.name or lead.title, LIST_ITEM_CHARS)
        lines.append(f"Lead #{lead.id} {esc(name)} · {esc(lead.status_name)}")
    for d in deals:
        lines.append(f"Deal #{d.id} {esc(clip(d.title, LIST_ITEM_CHARS))} · {esc(d.stage_name)}")
    for c in contacts:
        company = f" · {esc(clip(c.company_title, 40))}" if c.company_title else ""
        lines.append(f"Contact #{c.id} {esc(clip(c.name, LIST_ITEM_CHARS))}{company}")
    for ident, title in companies:
        lines.append(f"Company #{ident} {esc(clip(title, LIST_ITEM_CHARS))}")
    found = [("lead", x.id) for x in leads] + [("deal", x.id) for x in deals]
    rows = _open_rows(found + [("contact", c.id) for c in contacts], named=True)
    return Rendered(_join(lines), rows)


def owner_of(act: ActivityView) -> tuple[str, int] | None:
    for kind in ("deal", "lead"):
        for owner_type, owner_id in act.bindings:
            if owner_type == kind:
                return kind, owner_id
    return None


def task_line(a: ActivityView, tz: tzinfo, now: datetime) -> str:
    """`14:30 Call back · lead #12`"""
    owner = owner_of(a)
    where = f" · {owner[0]} #{owner[1]}" if owner else ""
    when = local(a.due_at, tz, now) if a.due_at else ""
    return f"{when} {esc(clip(a.subject or a.kind, LIST_ITEM_CHARS))}{where}"


def today_list(acts: Sequence[ActivityView], tz: tzinfo, now: datetime) -> Rendered:
    if not acts:
        return Rendered("Nothing due today. 🎉")
    lines = ["<b>Due today and overdue</b>"]
    rows: list[Row] = []
    for a in acts:
        flag = "⚠️ " if a.due_at is not None and overdue(a.due_at, now) else ""
        when = local(a.due_at, tz, now) if a.due_at else ""
        owner = owner_of(a)
        lines.append(flag + task_line(a, tz, now))
        row: Row = [(f"✅ {when}", cb.encode(cb.DONE, cb.ref("activity", a.id), "t"))]
        if owner:
            row.append((f"{owner[0]} #{owner[1]}", cb.encode(cb.OPEN, cb.ref(*owner))))
        rows.append(row)
    return Rendered(_join(lines), rows)


def exceptions_list(entries: Sequence[ExceptionView]) -> Rendered:
    if not entries:
        return Rendered(
            "The exception list is empty.\nAdd: <code>/exceptions add +49301234567 comment</code>"
        )
    lines = ["<b>Exception list</b> (never captured)"]
    for e in entries:
        comment = f" — {esc(clip(e.comment, 60))}" if e.comment else ""
        lines.append(f"{esc(e.kind)} <code>{esc(e.value)}</code>{comment}")
    lines.append("Remove: <code>/exceptions remove VALUE</code>")
    return Rendered(_join(lines))


def settings_view(current: MatchSettings) -> Rendered:
    on = {True: "on", False: "off"}
    lines = [
        "<b>CRM settings</b>",
        f"CRM mode: {esc(current.crm_mode.value)}",
        f"Repeat sales: {on[current.repeat_sales]}",
        f"Traditional lead mode: {on[current.traditional_mode]}",
    ]
    other_mode = "simple" if current.crm_mode.value == "classic" else "classic"
    rows: list[Row] = [
        [(f"Mode → {other_mode}", cb.encode(cb.SETTING, "m", other_mode))],
        [
            (
                f"Repeat sales → {on[not current.repeat_sales]}",
                cb.encode(cb.SETTING, "r", "0" if current.repeat_sales else "1"),
            )
        ],
    ]
    if not current.repeat_sales:
        rows.append(
            [
                (
                    f"Traditional mode → {on[not current.traditional_mode]}",
                    cb.encode(cb.SETTING, "t", "0" if current.traditional_mode else "1"),
                )
            ]
        )
    return Rendered(_join(lines), rows)


HELP_REP = """<b>Leadbot</b> — your leads in Telegram
New leads, repeat leads, missed calls and new e-mails on your records arrive here as cards.
Use the buttons on a card; reply to a card with text to add a comment.

/leads — my open leads (filters: new, repeat, a status, a source; e.g. <code>/leads repeat</code>)
/lead N — show lead N
/deals — my open deals (<code>/deals all</code> also the closed ones)
/history lead N — what happened on a lead (or deal N, contact N)
/find phone | e-mail | name — search
/today — call-backs and tasks due today and overdue
/web — a sign-in link for the web console (valid 10 minutes, once)
/stats [today | week | month] [@rep] — numbers and charts (a rep: their own)
/help — this text"""

HELP_SUPERVISOR = """
/team — open leads and deals per rep, not taken, overdue
/leads, /deals — everyone's; <code>/leads @rita</code> one rep's, <code>/leads mine</code> yours"""

HELP_ADMIN = """
/exceptions — the exception list (list, add, remove)
/settings — CRM mode, repeat sales, traditional mode"""


def help_text(role: str) -> str:
    supervises = role in ("supervisor", "admin")
    return (
        HELP_REP + (HELP_SUPERVISOR if supervises else "") + (HELP_ADMIN if role == "admin" else "")
    )


NO_WEB = (
    "The web console is not available: an admin needs to turn it on ([console] enabled) "
    "and set the server's public address (http.public_url)."
)

STRANGER = (
    "Hello! This bot is for our sales team. If you are a customer, please write to us by "
    "e-mail or phone — thank you!"
)
