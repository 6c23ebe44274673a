"""Pure rendering of cards: data in, (Telegram HTML, button rows) out (menus in `bot/menus.py`,
lists and texts in `bot/lists.py`, on the same helpers).

Every piece of user-supplied text goes through `esc`; long texts are clipped before escaping so
a cut never splits an entity or a tag. Cards stay far below Telegram's 4096-character limit
because every part has its own budget (see the constants).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal

from bot import callbacks as cb
from crm.config import StatusDef
from crm.dto import ActivityView, CommView, CompanyView, ContactView, DealView, LeadView
from crm.identity import shown_comm
from matching.channels import handle_kinds

TEXT_LIMIT = 4096
NAME_CHARS = 120
TITLE_CHARS = 200
SNIPPET_CHARS = 600
SNIPPET_LINES = 6
REASON_CHARS = 300
LIST_ITEM_CHARS = 70
MAX_COMMS = 4
MAX_TASKS = 3
MAX_HISTORY = 6
MAX_ATTACHMENTS = 4
HANDLE_KINDS = frozenset(handle_kinds())  # messenger ids a card lists under 💬
# A reminder fires up to a duties interval after its time and reaches the rep a moment later:
# a call is "overdue" only once it has been due for a while, not on its own reminder.
OVERDUE_AFTER = timedelta(minutes=5)

Row = list[tuple[str, str]]  # (button label, callback data)


@dataclass(frozen=True, slots=True)
class Viewer:
    rep_id: int
    role: str

    @property
    def supervises(self) -> bool:
        return self.role in ("supervisor", "admin")


@dataclass(frozen=True, slots=True)
class Rendered:
    text: str
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a rep's answer to the customer goes: a channel with a sender, and the address."""

    channel: str  # a `Channel` value
    to: str  # chat id, phone number, … as that channel's sender takes it
    # The customer's message it answers, if any: context for the sender, not part of where.
    answering: ActivityView | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CardContext:
    """What a card says besides the record itself."""

    headline: str | None = None  # plain text, e.g. "New lead"
    reason: str | None = None  # the matcher's decision reason
    message: ActivityView | None = None  # the inbound contact to quote
    tasks: tuple[ActivityView, ...] = ()  # open call-backs and scheduled calls
    history: tuple[tuple[str, int, str, str], ...] = ()  # earlier leads / deals of the client
    reply: ReplyTarget | None = None  # where an answer would go: the card offers "Reply"


# --- text helpers -----------------------------------------------------------------------------


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def clip(text: str, limit: int, max_lines: int | None = None) -> str:
    """Cut plain text cleanly: whole lines, then a word boundary, then an ellipsis."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    lines = [line.rstrip() for line in text.split("\n")]
    cut = False
    if max_lines is not None and len(lines) > max_lines:
        lines, cut = lines[:max_lines], True
    text = "\n".join(lines)
    if len(text) > limit:
        head = text[: limit - 1]
        space = max(head.rfind(" "), head.rfind("\n"))
        text, cut = (head[:space] if space > limit * 0.7 else head).rstrip(), True
    return text + "…" if cut else text


_TAG = re.compile(r"<[^>]+>")


def plain_text(rendered_html: str) -> str:
    """What a message we rendered shows, as plain text (tags removed, entities decoded)."""
    return html.unescape(_TAG.sub("", rendered_html))


def visible_length(rendered_html: str) -> int:
    """Length Telegram counts for a message we rendered (UTF-16 units, tags removed)."""
    return len(plain_text(rendered_html).encode("utf-16-le")) // 2


def local(when: datetime, tz: tzinfo, now: datetime | None = None) -> str:
    t = when.astimezone(tz)
    if now is not None and t.date() == now.astimezone(tz).date():
        return t.strftime("%H:%M")
    return t.strftime("%d.%m. %H:%M")


def overdue(due: datetime, now: datetime) -> bool:
    return now - due >= OVERDUE_AFTER


def money(amount: Decimal, currency: str) -> str:
    """1,200.50 EUR (as /stats writes sums)."""
    return f"{amount:,.2f} {esc(currency)}"


def _phone_link(number: str, shown: str) -> str:
    target = re.sub(r"[^0-9+]", "", number)
    if not target:
        return esc(shown)
    return f'<a href="tel:{esc(target)}">{esc(shown)}</a>'


def _comm_lines(comms: Sequence[CommView]) -> list[str]:
    """📞 / ✉️ / 💬 lines, each entry as a rep reads it (`CommView.display`: a phone with its
    extension, an email with its Unicode domain); phones become tel: links."""
    shown = [
        (c.kind, c.display or shown_comm(c.kind, c.raw, c.value, c.extension), c.value)
        for c in comms
    ]
    phones = [(raw, value) for kind, raw, value in shown if kind == "phone"][:MAX_COMMS]
    emails = [raw for kind, raw, _value in shown if kind == "email"][:MAX_COMMS]
    # A Telegram handle's raw value is the username when there is one: nicer than the id.
    handles = [
        f"telegram @{raw}" if kind == "telegram" and raw != value else f"{kind}: {value or raw}"
        for kind, raw, value in shown
        if kind in HANDLE_KINDS
    ][:MAX_COMMS]
    out = []
    if phones:
        out.append("📞 " + ", ".join(_phone_link(v or raw, clip(raw, 40)) for raw, v in phones))
    if emails:
        out.append("✉️ " + ", ".join(esc(clip(e, 80)) for e in emails))
    if handles:
        out.append("💬 " + ", ".join(esc(clip(h, 60)) for h in handles))
    return out


def _quote(message: ActivityView | None) -> list[str]:
    if message is None:
        return []
    out = []
    if message.subject and message.kind == "email":
        out.append(f"<b>Subject:</b> {esc(clip(message.subject, TITLE_CHARS))}")
    if message.body:
        out.append(
            f"<blockquote>{esc(clip(message.body, SNIPPET_CHARS, SNIPPET_LINES))}</blockquote>"
        )
    return out + _attachment_lines(message.meta.get("attachments"))


def _size(size: int) -> str:
    if size <= 0:
        return ""
    if size < 1024:
        return f", {size} B"
    return f", {size / 1024:.0f} KB" if size < 1024 * 1024 else f", {size / 1048576:.1f} MB"


def _attachment_lines(attachments: object) -> list[str]:
    """📎 lines for the files a message carried (metadata only; stored as given)."""
    if not isinstance(attachments, list):
        return []
    out = []
    for a in attachments[:MAX_ATTACHMENTS]:
        if not isinstance(a, dict):
            continue
        size = a.get("size")
        detail = f"{a.get('content_type') or '?'}{_size(size if isinstance(size, int) else 0)}"
        out.append(f"📎 {esc(clip(str(a.get('name') or 'file'), 80))} ({esc(detail)})")
    if len(attachments) > MAX_ATTACHMENTS:
        out.append(f"📎 … and {len(attachments) - MAX_ATTACHMENTS} more")
    return out


def _task_lines(tasks: Sequence[ActivityView], tz: tzinfo, now: datetime) -> list[str]:
    out = []
    for t in tasks[:MAX_TASKS]:
        if (t.meta or {}).get("callback"):
            times = f" ×{t.attempts}" if t.attempts > 1 else ""
            last = f", last {local(t.last_attempt_at, tz, now)}" if t.last_attempt_at else ""
            out.append(f"📵 Missed call{times}{last} — call back")
        elif t.due_at is not None:
            late = " (overdue)" if overdue(t.due_at, now) else ""
            out.append(
                f"⏰ {esc(clip(t.subject or 'Call back', 80))} at {local(t.due_at, tz, now)}{late}"
            )
    return out


SNOOZE_CHOICES = (("😴 15 min", "15"), ("😴 1 hour", "60"), ("😴 Tomorrow 9:00", "t9"))


def _task_rows(tasks: Sequence[ActivityView], now: datetime | None = None) -> list[Row]:
    """Done buttons; a scheduled call that is due also gets snooze buttons (the reminder)."""
    rows: list[Row] = []
    for t in tasks[:MAX_TASKS]:
        callback = bool((t.meta or {}).get("callback"))
        label = "✅ Called back" if callback else f"✅ Done: call #{t.id}"
        rows.append([(label, cb.encode(cb.DONE, cb.ref("activity", t.id)))])
        if not callback and now is not None and t.due_at is not None and t.due_at <= now:
            a = cb.ref("activity", t.id)
            rows.append([(text, cb.encode(cb.SNOOZE, a, arg)) for text, arg in SNOOZE_CHOICES])
    return rows


def _history_button(r: str) -> tuple[str, str]:
    return ("🕘 History", cb.encode(cb.HISTORY, r))


def _history_line(
    history: Sequence[tuple[str, int, str, str]], statuses: Sequence[StatusDef]
) -> str:
    names = {s.code: s.name for s in statuses}
    deal_outcome = {"process": "open", "success": "won", "failure": "lost"}
    parts = []
    for kind, ident, _title, outcome in history[:MAX_HISTORY]:
        shown = (
            names.get(outcome, outcome) if kind == "lead" else deal_outcome.get(outcome, outcome)
        )
        parts.append(f"{kind} #{ident} {shown.lower()}")
    more = f" and {len(history) - MAX_HISTORY} more" if len(history) > MAX_HISTORY else ""
    return "Earlier: " + (
        ", ".join(esc(p) for p in parts) + more if parts else "nothing closed yet"
    )


def _head(ctx: CardContext, fallback: str) -> str:
    return f"<b>{esc(clip(ctx.headline or fallback, TITLE_CHARS))}</b>"


def _common_tail(ctx: CardContext, responsible: str | None, tz: tzinfo, now: datetime) -> list[str]:
    out = [f"Responsible: {esc(clip(responsible, NAME_CHARS)) if responsible else '— (queue)'}"]
    if ctx.reason:
        out.append(f"Why: <i>{esc(clip(ctx.reason, REASON_CHARS))}</i>")
    out += _quote(ctx.message)
    out += _task_lines(ctx.tasks, tz, now)
    return out


# --- cards --------------------------------------------------------------------------------------


def lead_card(
    lead: LeadView,
    ctx: CardContext,
    viewer: Viewer,
    statuses: Sequence[StatusDef],
    tz: tzinfo,
    now: datetime,
    client: ContactView | None = None,
) -> Rendered:
    """`client`: the contact the lead is linked to; its name and identities fill in what the
    lead lacks (a repeat lead has none of its own)."""
    lines = [_head(ctx, f"Lead #{lead.id}")]
    if lead.is_return_customer:
        lines.append("🔁 <b>Repeat client</b>")
    name = lead.name or (client.name if client is not None and client.name.strip() else None)
    company_title = lead.company_title or (client.company_title if client else None)
    who = clip(name or lead.title, NAME_CHARS)
    company = f" · {esc(clip(company_title, NAME_CHARS))}" if company_title else ""
    lines.append(f"👤 <b>{esc(who)}</b>{company}")
    if name and lead.title != name:
        lines.append(f"📝 {esc(clip(lead.title, TITLE_CHARS))}")
    lines += _comm_lines(_merged(lead.comms, client.comms if client else []))
    channel = ctx.message.channel if ctx.message and ctx.message.channel else None
    lines.append(
        f"Lead #{lead.id} · {esc(lead.status_name)}"
        + (f" · channel {esc(channel)}" if channel else "")
        + f" · source {esc(lead.source)}"
    )
    if lead.is_return_customer or ctx.history:
        lines.append(_history_line(ctx.history, statuses))
    if lead.junk_reason:
        lines.append(f"Junk reason: {esc(clip(lead.junk_reason, REASON_CHARS))}")
    lines += _common_tail(ctx, lead.responsible_name, tz, now)
    rows = lead_rows(lead, ctx.tasks, viewer, chat=ctx.reply is not None, now=now)
    return Rendered(_join(lines), rows)


def _merged(own: Sequence[CommView], client: Sequence[CommView]) -> list[CommView]:
    """The record's own comms, then the client's that it does not hold already."""
    have = {(c.kind, c.value or c.raw) for c in own}
    return [*own, *(c for c in client if (c.kind, c.value or c.raw) not in have)]


def _reply_button(r: str) -> tuple[str, str]:
    return ("💬 Reply", cb.encode(cb.REPLY, r))


def lead_rows(
    lead: LeadView,
    tasks: Sequence[ActivityView],
    viewer: Viewer,
    chat: bool = False,
    now: datetime | None = None,
) -> list[Row]:
    r = cb.ref("lead", lead.id)
    if not lead.is_open:
        return [
            [*([_reply_button(r)] if chat else []), _history_button(r)],
            *_task_rows(tasks, now),
        ]
    rows: list[Row] = []
    first: Row = []
    if lead.taken_at is None and lead.responsible_id in (None, viewer.rep_id):
        first.append(("✋ Take", cb.encode(cb.TAKE, r)))
    first.append(("⏰ Call back", cb.encode(cb.CALLBACK_MENU, r)))
    if chat:
        first.append(_reply_button(r))
    rows.append(first)
    rows += _task_rows(tasks, now)
    rows.append(
        [
            ("📊 Status", cb.encode(cb.STATUS_MENU, r)),
            ("🔄 Convert", cb.encode(cb.CONVERT_MENU, r)),
            _history_button(r),
        ]
    )
    last: Row = [("🗑 Junk", cb.encode(cb.JUNK_MENU, r))]
    if viewer.supervises:
        last += [
            ("👥 Reassign", cb.encode(cb.REASSIGN_MENU, r)),
            ("⛔ Exception", cb.encode(cb.EXCEPT_MENU, r)),
        ]
    rows.append(last)
    return rows


def deal_card(
    deal: DealView,
    client: ContactView | CompanyView | None,
    ctx: CardContext,
    viewer: Viewer,
    tz: tzinfo,
    now: datetime,
) -> Rendered:
    badges = []
    if deal.is_return_customer:
        badges.append("🔁 <b>Repeat client</b>")
    if deal.is_repeated_approach:
        badges.append("↩ repeated inquiry")
    lines = [_head(ctx, f"Deal #{deal.id}")]
    if badges:
        lines.append(" · ".join(badges))
    lines.append(f"💼 <b>{esc(clip(deal.title, TITLE_CHARS))}</b>")
    if isinstance(client, ContactView):
        company = (
            f" · {esc(clip(client.company_title, NAME_CHARS))}" if client.company_title else ""
        )
        lines.append(f"👤 {esc(clip(client.name, NAME_CHARS))}{company}")
    elif client is not None:  # a company's deal with no contact person
        lines.append(f"🏢 {esc(clip(client.title, NAME_CHARS))}")
    if client is not None:
        lines += _comm_lines(client.comms)
    amount = f" · 💶 {money(deal.amount, deal.currency)}" if deal.amount is not None else ""
    source = f" · source {esc(deal.source)}" if deal.source else ""
    lines.append(
        f"Deal #{deal.id} · {esc(deal.pipeline_name)}: {esc(deal.stage_name)}{amount}{source}"
    )
    if ctx.history:
        lines.append(_history_line(ctx.history, ()))
    lines += _common_tail(ctx, deal.responsible_name, tz, now)
    rows = deal_rows(deal, ctx.tasks, chat=ctx.reply is not None, now=now)
    return Rendered(_join(lines), rows)


def deal_rows(
    deal: DealView, tasks: Sequence[ActivityView], chat: bool = False, now: datetime | None = None
) -> list[Row]:
    r = cb.ref("deal", deal.id)
    reply = [_reply_button(r)] if chat else []
    if not deal.is_open:
        reopen = ("↩ Reopen", cb.encode(cb.REOPEN, r))
        return [[reopen, *reply, _history_button(r)], *_task_rows(tasks, now)]
    return [
        [
            ("➡ Stage", cb.encode(cb.STAGE_MENU, r)),
            ("⏰ Call back", cb.encode(cb.CALLBACK_MENU, r)),
            *reply,
        ],
        *_task_rows(tasks, now),
        [("🏆 Won", cb.encode(cb.WIN, r)), ("✖ Lost", cb.encode(cb.LOSE, r))],
        [("💶 Amount", cb.encode(cb.AMOUNT, r)), _history_button(r)],
    ]


def contact_card(contact: ContactView, ctx: CardContext, tz: tzinfo, now: datetime) -> Rendered:
    """A contact with no open lead or deal got in touch (activity on the client only)."""
    lines = [_head(ctx, f"Contact #{contact.id}")]
    company = f" · {esc(clip(contact.company_title, NAME_CHARS))}" if contact.company_title else ""
    lines.append(f"👤 <b>{esc(clip(contact.name, NAME_CHARS))}</b>{company}")
    lines += _comm_lines(contact.comms)
    lines += _common_tail(ctx, None, tz, now)[1:]
    r = cb.ref("contact", contact.id)
    first = [*([_reply_button(r)] if ctx.reply is not None else []), _history_button(r)]
    return Rendered(_join(lines), [first, *_task_rows(ctx.tasks, now)])


def notice(text: str) -> Rendered:
    return Rendered(esc(text))


def _join(lines: Sequence[str]) -> str:
    return "\n".join(line for line in lines if line)
