"""What the slash commands do: parse the arguments, call one CRM use case, render a view.

No Telegram types here; `bot.handlers` turns the `Rendered` result into a reply.
CRM errors propagate; the handler shows their sentence to the rep.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from typing import Any

from bot import history, lists, views
from bot.cards import Cards
from bot.clock import Clock
from bot.views import (
    Rendered,
    Viewer,
)
from crm.config import StatusDef
from crm.dto import Actor, RepView
from crm.errors import Forbidden, InvalidInput
from crm.facade import Crm
from crm.services.listing import ListFilter
from matching.channels import sources

SOURCES = (*sources(), "OTHER")  # every channel's source code, and what none of them set
FILTER_BYTES = 40  # the filter rides along in the pager buttons' 64-byte payload
LEADS_USAGE = "usage: /leads [mine | @rep | new | repeat | all | queue | a status | a source]"
DEALS_USAGE = "usage: /deals [mine | @rep] [all]"


def actor_of(rep: RepView) -> Actor:
    return Actor(rep.id, rep.role)


def lead_filter(
    tokens: Sequence[str],
    owner: int | None,
    statuses: Sequence[StatusDef],
    offset: int,
    limit: int,
) -> ListFilter:
    """`/leads` arguments → a filter: `owner`'s (None: anyone's) and open unless the tokens
    say otherwise."""
    kw: dict[str, Any] = {"responsible_id": owner, "semantic": "process"}
    for token in tokens:
        low = token.lower()
        status = next((s for s in statuses if low in (s.code.lower(), s.name.lower())), None)
        if low == "new":
            kw["status"] = statuses[0].code
        elif low == "repeat":
            kw["is_return_customer"] = True
        elif low == "all":
            kw["semantic"] = None
        elif low in ("queue", "unassigned"):
            kw["responsible_id"], kw["unassigned"] = None, True
        elif status is not None:
            kw["status"], kw["semantic"] = status.code, None
        elif token.upper() in SOURCES:
            kw["source"] = token.upper()
        else:
            codes = ", ".join(s.code.lower() for s in statuses)
            raise InvalidInput(
                f"unknown filter “{token[:30]}”: use new, repeat, all, queue, mine, @rep, "
                f"a status ({codes}) or a source ({', '.join(s.lower() for s in SOURCES)})"
            )
    return ListFilter(offset=offset, limit=limit, **kw)


def split_value(args: Sequence[str]) -> tuple[str, list[str]]:
    """A phone typed with spaces ("+49 30 123 456 comment") or an e-mail, then the rest."""
    end = 1
    if "@" not in args[0]:
        while end < len(args) and re.fullmatch(r"[0-9()/.-]+", args[end]):
            end += 1
    return " ".join(args[:end]), list(args[end:])


def find_rep(token: str, reps: Sequence[RepView], usage: str) -> RepView:
    """`@rita`, `rita`, `#3` or `3`: a rep by number, by whole name or first name."""
    word = token.lstrip("@#").lower()
    if word.isdigit():
        found = [r for r in reps if r.id == int(word)]
    else:
        found = [
            r
            for r in reps
            if word in (r.name.lower().replace(" ", ""), r.name.lower().split(" ")[0])
        ]
    if len(found) != 1:
        what = "more than one rep" if found else "no rep"
        raise InvalidInput(f"{what} matches “{token[:30]}”; {usage}")
    return found[0]


@dataclass(frozen=True, slots=True)
class Whose:
    """Whose records a list shows: `owner` None is everyone's; `tokens` are the other
    filters; `label` says it to the rep; `key` rides in the pager buttons."""

    owner: int | None
    tokens: list[str]
    label: str
    key: str


def record_number(args: Sequence[str], what: str) -> int:
    if len(args) != 1 or not args[0].lstrip("#").isdigit():
        raise InvalidInput(f"usage: /{what} N (the {what} number)")
    return int(args[0].lstrip("#"))


class Commands:
    def __init__(
        self, crm: Crm, cards: Cards, clock: Clock, tz: tzinfo, page_size: int = 10
    ) -> None:
        self.crm = crm
        self.cards = cards
        self.clock = clock
        self.tz = tz
        self.page_size = page_size

    async def whose(self, rep: RepView, args: Sequence[str], usage: str) -> Whose:
        """`mine` and `@rep` out of a list's arguments. A rep's lists are their own; a
        supervisor's everyone's unless `mine` or `@rep` narrows them."""
        tokens, shown, key = [], [], []
        owner = None if rep.role in ("supervisor", "admin") else rep.id
        reps: Sequence[RepView] = ()
        for token in args:
            if token.lower() == "mine":
                owner = rep.id
                shown.append("mine")
                key.append("mine")
            elif token.startswith("@") or (token.startswith("#") and token[1:].isdigit()):
                reps = reps or await self.crm.reps.all()
                who = find_rep(token, reps, usage)
                if who.id != rep.id and rep.role not in ("supervisor", "admin"):
                    raise Forbidden("a rep sees only their own list")
                owner = who.id
                shown.append(f"@{who.name}")
                key.append(f"@{who.id}")
            else:
                tokens.append(token)
                shown.append(token)
                key.append(token)
        return Whose(owner, tokens, " ".join(shown), " ".join(key))

    async def leads(self, rep: RepView, args: Sequence[str], offset: int = 0) -> Rendered:
        text = " ".join(args)
        if len(text.encode()) > FILTER_BYTES:
            raise InvalidInput("that filter is too long; use one or two words")
        whose = await self.whose(rep, text.split(), LEADS_USAGE)
        flt = lead_filter(
            whose.tokens, whose.owner, self.crm.config.lead_statuses, offset, self.page_size
        )
        leads, total = await self.crm.leads.page(flt, actor_of(rep))
        paging = lists.Paging(total, offset, self.page_size, whose.key, whose.label)
        return lists.leads_list(leads, paging, owners=whose.owner is None)

    async def deals(self, rep: RepView, args: Sequence[str], offset: int = 0) -> Rendered:
        whose = await self.whose(rep, args, DEALS_USAGE)
        if [t.lower() for t in whose.tokens] not in ([], ["all"]):
            raise InvalidInput(DEALS_USAGE)
        everything = bool(whose.tokens)
        flt = ListFilter(
            responsible_id=whose.owner,
            semantic=None if everything else "process",
            offset=offset,
            limit=self.page_size,
        )
        deals, total = await self.crm.deals.page(flt, actor_of(rep))
        paging = lists.Paging(total, offset, self.page_size, whose.key, whose.label)
        return lists.deals_list(deals, paging, owners=whose.owner is None)

    async def history(self, rep: RepView, args: Sequence[str]) -> Rendered:
        kind, ident = history.history_args(args)
        return await self.history_page(rep, kind, ident, 0)

    async def history_page(self, rep: RepView, kind: str, ident: int, page: int) -> Rendered:
        items, more = await history.load_page(self.crm, kind, ident, actor_of(rep), page)
        return history.history_view(kind, ident, items, page, more, self.tz, self.clock.now())

    async def team(self, rep: RepView) -> Rendered:
        overdue_before = self.clock.now() - views.OVERDUE_AFTER
        return lists.team_view(await self.crm.team.overview(actor_of(rep), overdue_before))

    async def record(self, rep: RepView, kind: str, ident: int) -> Rendered:
        card = await self.cards.load(kind, ident, actor_of(rep))
        return self.cards.render(card, Viewer(rep.id, rep.role), self.clock.now())

    async def find(self, rep: RepView, args: Sequence[str]) -> Rendered:
        query = " ".join(args).strip()
        if len(query) < 2:
            raise InvalidInput("usage: /find phone, e-mail or at least two letters of a name")
        found = await self.crm.search.find(query, actor_of(rep))
        return lists.search_results(
            query, found.contacts, found.companies, found.leads, found.deals
        )

    async def today(self, rep: RepView) -> Rendered:
        now = self.clock.now()
        local = now.astimezone(self.tz)
        end = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=self.tz)
        acts = await self.crm.activities.due(now, rep_id=rep.id, until=end)
        return lists.today_list(acts, self.tz, now)

    async def exceptions(self, rep: RepView, args: Sequence[str]) -> Rendered:
        if rep.role != "admin":
            raise Forbidden("only an admin can manage the exception list")
        sub = args[0].lower() if args else "list"
        if sub == "list" and len(args) <= 1:
            return lists.exceptions_list(await self.crm.exceptions.all())
        if sub == "add" and len(args) >= 2:
            value, rest = split_value(args[1:])
            comment = " ".join(rest) or f"added by {rep.name}"
            entry = await self.crm.exceptions.add(value, comment, actor_of(rep))
            return views.notice(f"Added {entry.kind} {entry.value} to the exception list.")
        if sub == "remove" and len(args) >= 2:
            value = " ".join(args[1:])
            await self.crm.exceptions.remove(value, actor_of(rep))
            return views.notice(f"Removed {value} from the exception list.")
        raise InvalidInput(
            "usage: /exceptions [list | add PHONE-OR-EMAIL [comment] | remove VALUE]"
        )

    async def settings(self, rep: RepView) -> Rendered:
        if rep.role != "admin":
            raise Forbidden("only an admin can change the CRM settings")
        return lists.settings_view(await self.crm.settings.get())
