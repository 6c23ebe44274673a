"""A record's timeline in the bot: `/history lead 12` and the card's 🕘 History button.

The items come from `crm.history` (which checks the rep's rights), newest first, a few to a
message so a page stays far below Telegram's 4096 characters; ◀ ▶ page through them in
place. Every customer's and rep's text is clipped, then escaped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime, tzinfo

from bot import callbacks as cb
from bot.views import Rendered, Row, _join, clip, esc, local
from crm.dto import Actor
from crm.errors import InvalidInput
from crm.facade import Crm
from crm.services.history import HistoryItem
from crm.services.listing import MAX_LIMIT

PAGE = 6  # items to a message: 6 × ~520 characters at most
SKIP_CHUNK = MAX_LIMIT - MAX_LIMIT % PAGE  # pages skipped with one query
KINDS = ("lead", "deal", "contact")  # those with a button ref
USAGE = "usage: /history lead 12 (or deal 3, contact 4)"
ICONS = {
    "call": "📞",
    "email": "✉️",
    "message": "💬",
    "webform": "📝",
    "comment": "🗨",
    "task": "⏰",
    "meeting": "📅",
    "change": "🔄",
    "event": "📥",
}
TITLE_CHARS = 100
BODY_CHARS = 240
BODY_LINES = 3
WHY_CHARS = 160


def history_args(args: Sequence[str]) -> tuple[str, int]:
    """`lead 12`, `deal #3`, or a bare number (a lead)."""
    words = [a.lower().lstrip("#") for a in args]
    if len(words) == 1 and words[0].isdigit():
        return "lead", int(words[0])
    if len(words) == 2 and words[0] in KINDS and words[1].isdigit():
        return words[0], int(words[1])
    raise InvalidInput(USAGE)


async def load_page(
    crm: Crm, kind: str, ident: int, actor: Actor, page: int
) -> tuple[list[HistoryItem], bool]:
    """Page `page` (0: the newest) and whether older items follow."""
    skip, after = page * PAGE, None
    while skip > 0:
        step = min(skip, SKIP_CHUNK)
        skipped = await crm.history.page(kind, ident, actor, after=after, limit=step)
        if skipped.next_cursor is None:  # the record's history got shorter
            return [], False
        after, skip = skipped.next_cursor, skip - step
    found = await crm.history.page(kind, ident, actor, after=after, limit=PAGE)
    return found.items, found.next_cursor is not None


def _title(item: HistoryItem, tz: tzinfo, now: datetime) -> str:
    title = item.title
    due = item.after.get("due_at") if item.action == "snoozed" else None
    if isinstance(due, str):
        with contextlib.suppress(ValueError):
            title += f" to {local(datetime.fromisoformat(due), tz, now)}"
    if item.action == "amount" and item.after.get("amount") is not None:
        title += f": {item.after['amount']}"
    return title


def _item_lines(item: HistoryItem, here: tuple[str, int], tz: tzinfo, now: datetime) -> list[str]:
    icon = ICONS.get(item.kind, "•")
    who = f" · {esc(clip(item.actor_name, 40))}" if item.actor_name else ""
    where = (
        f" · {item.owner_type} #{item.owner_id}" if (item.owner_type, item.owner_id) != here else ""
    )
    title = esc(clip(_title(item, tz, now), TITLE_CHARS))
    head = f"{icon} {local(item.at, tz, now)} · <b>{title}</b>{who}{where}"
    if item.due_at is not None and item.kind != "change":
        state = " ✅" if item.done else ""
        head += f" · due {local(item.due_at, tz, now)}{state}"
    out = [head]
    if item.body:
        out.append(f"<blockquote>{esc(clip(item.body, BODY_CHARS, BODY_LINES))}</blockquote>")
    if item.attachments:
        out.append("📎 " + esc(clip(", ".join(item.attachments), 80)))
    if item.kind != "event" and item.decisions and item.decisions[-1].reason:
        out.append(f"Why: <i>{esc(clip(item.decisions[-1].reason, WHY_CHARS))}</i>")
    return out


def history_view(
    kind: str,
    ident: int,
    items: Sequence[HistoryItem],
    page: int,
    more: bool,
    tz: tzinfo,
    now: datetime,
) -> Rendered:
    numbered = f" · page {page + 1}" if page or more else ""
    lines = [f"<b>🕘 History of {kind} #{ident}</b>{numbered}"]
    if not items:
        lines.append("Nothing older." if page else "Nothing recorded yet.")
    for item in items:
        lines += _item_lines(item, (kind, ident), tz, now)
    r = cb.ref(kind, ident)
    pager: Row = []
    if page > 0:
        pager.append(("◀ Newer", cb.encode(cb.HISTORY, r, str(page - 1))))
    if more:
        pager.append(("Older ▶", cb.encode(cb.HISTORY, r, str(page + 1))))
    rows = [pager] if pager else []
    rows.append([(f"Open {kind} #{ident}", cb.encode(cb.OPEN, r))])
    return Rendered(_join(lines), rows)
