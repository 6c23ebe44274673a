"""The pipeline board (`/app/board`): leads by status or deals by stage, filters in the URL,
paged columns, moves by drag and drop, and live updates from the change feed (`/app/events`).

Every number and card comes from `crm.board` (its rights, its rules); this module only reads
the query, renders, and turns feed changes into server-sent events for one signed-in rep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from aiohttp import web

from console.web import (
    JINJA,
    PREFIX,
    Context,
    Refused,
    api,
    crm_of,
    current_actor,
    flash,
    json_refusal,
    page,
    redirect,
    signed_in,
)
from crm.dto import Actor
from crm.errors import CrmError, Forbidden, NotFound
from crm.facade import Crm
from crm.services.board import BoardFilters, BoardView, Card
from httpkit import read_form, read_json
from matching.channels import CHANNELS

log = logging.getLogger(__name__)

BOARD = f"{PREFIX}/board"
PER_COLUMN = 20
# A comment line this often keeps proxies from closing a quiet stream.
HEARTBEAT_SECONDS = 15.0
# How often a quiet stream looks whether its browser went away (and its session ended).
TICK_SECONDS = 1.0
FILTER_KEYS = ("owner", "source", "repeat", "from", "to", "q")
_TEL = re.compile(r"[^\d+]")
# Event ids: this process's run, then a counter; an id from another run means a gap.
_RUN = uuid.uuid4().hex[:8]
_SEQ = itertools.count(1)


# Set when the service shuts down: open streams end at their next tick instead of holding
# the shutdown for its whole grace period.
CLOSING = web.AppKey("console.board.closing", asyncio.Event)


def setup(app: web.Application) -> None:
    """The board's share of the app: streams end when the app shuts down."""
    app[CLOSING] = asyncio.Event()

    async def close_streams(app: web.Application) -> None:
        app[CLOSING].set()

    app.on_shutdown.append(close_streams)


@dataclass(frozen=True, slots=True)
class BoardQuery:
    """The board's URL query, read and checked: what `crm.board` needs, and the raw values
    the filter form shows again."""

    kind: str
    pipeline: str | None
    filters: BoardFilters
    raw: dict[str, str]

    def query_string(self, **more: str) -> str:
        """The same board (kind, pipeline, filters) as a URL query, plus `more`."""
        values = {"kind": self.kind, **({"pipeline": self.pipeline} if self.pipeline else {})}
        values |= {k: v for k, v in self.raw.items() if v}
        return urlencode(values | more)


def _day(raw: str, what: str, tz: ZoneInfo) -> datetime:
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise Refused(400, f"{what} {raw!r} is not a date (YYYY-MM-DD)") from None
    return datetime.combine(day, time(), tz)


def board_query(request: web.Request) -> BoardQuery:
    """The board's kind, pipeline and filters from the query; a clear 400 for a bad one."""
    q = request.query
    crm = crm_of(request)
    kind = q.get("kind") or "lead"
    if kind not in ("lead", "deal"):
        raise Refused(400, f"the board shows leads or deals, not {kind!r}")
    pipeline = (q.get("pipeline") or None) if kind == "deal" else None
    if pipeline and pipeline not in {p.code for p in crm.config.pipelines}:
        raise Refused(400, f"there is no pipeline {pipeline!r}")
    raw = {k: q.get(k, "").strip() for k in FILTER_KEYS}
    owner, unassigned = None, False
    if raw["owner"] == "none":
        unassigned = True
    elif raw["owner"]:
        if not raw["owner"].isdigit() or len(raw["owner"]) > 12:
            raise Refused(400, f"owner {raw['owner']!r} is not a rep")
        owner = int(raw["owner"])
    if raw["repeat"] not in ("", "new", "repeat"):
        raise Refused(400, "show new or repeat clients, or both")
    tz = ZoneInfo(crm.config.timezone)
    created_from = _day(raw["from"], "from", tz) if raw["from"] else None
    # "to" is the last day shown: the range ends when the next day starts.
    created_to = _day(raw["to"], "to", tz) + timedelta(days=1) if raw["to"] else None
    if len(raw["q"]) > 200:
        raise Refused(400, "search for at most 200 characters")
    filters = BoardFilters(
        owner_id=owner,
        unassigned=unassigned,
        source=raw["source"] or None,
        repeat=None if not raw["repeat"] else raw["repeat"] == "repeat",
        created_from=created_from,
        created_to=created_to,
        text=raw["q"] or None,
    )
    return BoardQuery(kind, pipeline, filters, raw)


def admits(filters: BoardFilters, card: Card) -> bool:
    """Whether a card (from a live change) belongs on a board with these filters. The text
    filter is matched against what the card shows (title, client, phone, email); the board's
    own reload searches as `crm.board` does."""
    if filters.owner_id is not None and card.owner_id != filters.owner_id:
        return False
    if filters.unassigned and card.owner_id is not None:
        return False
    if filters.source_code and card.source != filters.source_code:
        return False
    if filters.repeat is not None and card.repeat != filters.repeat:
        return False
    if filters.created_from and card.created_at < filters.created_from:
        return False
    if filters.created_to and card.created_at >= filters.created_to:
        return False
    text = (filters.text or "").strip().lower()
    if not text:
        return True
    digits = re.sub(r"\D", "", text)
    shown = " ".join(v for v in (card.title, card.client_name, card.email) if v).lower()
    phone = re.sub(r"\D", "", card.phone or "")
    return text in shown or (len(digits) >= 5 and digits in phone)


def tel(phone: str) -> str:
    """A phone as a `tel:` target: digits and the leading plus only."""
    return "tel:" + _TEL.sub("", phone)


def age(at: datetime, now: datetime | None = None) -> str:
    """How long ago, as a card says it: 5m, 3h, 2d."""
    seconds = max(0, int(((now or datetime.now(UTC)) - at).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _source_label(code: str | None) -> str:
    return next((s.label for s in CHANNELS.values() if s.source == code), code or "")


def _money(sums: dict[str, Any]) -> list[str]:
    return [f"{amount:,.2f} {currency}" for currency, amount in sorted(sums.items())]


def _card_html(request: web.Request, card: Card, columns: list[tuple[str, str]]) -> str:
    env = request.config_dict[JINJA]
    return env.get_template("board_card.html").render(card_context(card, columns))


def card_context_helpers() -> Context:
    """What board_card.html calls, beside `card` and `columns`."""
    return {"tel": tel, "age": age, "source_label": _source_label}


def card_context(card: Card, columns: list[tuple[str, str]]) -> Context:
    return {"card": card, "columns": columns, **card_context_helpers()}


async def _view(request: web.Request, bq: BoardQuery, per_column: int) -> BoardView:
    return await crm_of(request).board.columns(
        bq.kind, bq.filters, current_actor(request), pipeline=bq.pipeline, per_column=per_column
    )


@page("board.html")
async def board(request: web.Request) -> Context:
    """The board: columns with counts, sums and their first cards; filters from the URL."""
    crm, actor = crm_of(request), current_actor(request)
    bq = board_query(request)
    view = await _view(request, bq, PER_COLUMN)
    columns = [(c.code, c.name) for c in view.columns]
    reps = await crm.reps.all(include_inactive=False)
    return {
        "title": "Board",
        # The page flips a card's overdue badge when its due time passes, by the server's
        # clock (the browser's may be off).
        "server_now": datetime.now(UTC).isoformat(),
        "bq": bq,
        "view": view,
        "columns": columns,
        "money": _money,
        "lost_reasons": crm.config.lost_reasons,
        **card_context_helpers(),
        "pipelines": crm.config.pipelines,
        "reps": reps if actor.sees_everything else [r for r in reps if r.id == actor.rep_id],
        "sources": [(s.source, s.label) for s in CHANNELS.values()],
    }


@api
async def column(request: web.Request) -> Context:
    """More cards of one column (keyset paging): rendered cards and the next cursor."""
    bq = board_query(request)
    code = request.query.get("column", "")
    after = request.query.get("after") or None
    crm, actor = crm_of(request), current_actor(request)
    page_ = await crm.board.column_page(
        bq.kind, code, bq.filters, actor, after=after, limit=PER_COLUMN, pipeline=bq.pipeline
    )
    columns = await _column_names(request, bq)
    return {
        "html": "".join(_card_html(request, c, columns) for c in page_.cards),
        "next": page_.next_cursor,
    }


@api
async def totals(request: web.Request) -> Context:
    """Counts and sums of every column, for a board that applied live changes."""
    view = await _view(request, board_query(request), 1)
    return {"columns": {c.code: {"count": c.count, "sums": _money(c.sums)} for c in view.columns}}


async def _columns_of(crm: Crm, kind: str, pipeline: str | None) -> list[tuple[str, str]]:
    """(code, name) of a board's columns: what a card's "Move to" offers."""
    if kind == "lead":
        return [(s.code, s.name) for s in crm.config.lead_statuses]
    return [(code, name) for code, name, _ in await crm.deals.stages(pipeline)]


async def _column_names(request: web.Request, bq: BoardQuery) -> list[tuple[str, str]]:
    return await _columns_of(crm_of(request), bq.kind, bq.pipeline)


async def _move(request: web.Request, doc: dict[str, Any]) -> Card:
    kind = str(doc.get("kind") or "")
    raw_id = str(doc.get("id") or "")
    if not raw_id.isdigit() or len(raw_id) > 12:
        raise Refused(400, "say which card to move (id)")
    to = str(doc.get("to") or "")
    if not to:
        raise Refused(400, "say which column the card goes to (to)")
    extra = {k: doc[k] for k in ("reason", "amount", "convert") if doc.get(k) not in (None, "")}
    if "convert" in extra:
        extra["convert"] = extra["convert"] in (True, "1", "true", "on")
    return await crm_of(request).board.move(kind, int(raw_id), to, current_actor(request), **extra)


@api
async def move(request: web.Request) -> Context:
    """A dropped card: moved through crm.board.move, answered with the card as it is now."""
    doc = await read_json(request)
    if not isinstance(doc, dict):
        raise Refused(400, "the body is a JSON object: kind, id, to (reason, amount, convert)")
    card = await _move(request, doc)
    columns = await _column_names_for(request, card)
    return {"id": card.id, "column": card.column, "html": _card_html(request, card, columns)}


async def _column_names_for(request: web.Request, card: Card) -> list[tuple[str, str]]:
    crm = crm_of(request)
    pipeline = None
    if card.kind == "deal":
        pipeline = (await crm.deals.get(card.id, current_actor(request))).pipeline
    return await _columns_of(crm, card.kind, pipeline)


@page("message.html")
async def move_form(request: web.Request) -> web.StreamResponse:
    """The card's "Move to…" form without JavaScript: move, then back to the board."""
    form = await read_form(request)
    doc = {k: v for k, v in form.items() if isinstance(v, str)}
    # Back to the board as it was (its filters): the Referer, when it is our board.
    back = urlsplit(request.headers.get("Referer", ""))
    target = f"{BOARD}?{back.query}" if back.path == BOARD and back.query else BOARD
    try:
        card = await _move(request, doc)
    except (CrmError, Refused) as err:
        response = redirect(target)
        flash(response, f"Not moved: {err}")
        return response
    response = redirect(target)
    flash(response, f"#{card.id} {card.title} moved.")
    return response


# --- live updates ---------------------------------------------------------------------------


def _may_see(actor: Actor, owner_id: int | None) -> bool:
    return actor.sees_everything or owner_id is None or owner_id == actor.rep_id


async def _event_for(crm: Crm, actor: Actor, bq: BoardQuery, kind: str, ident: int) -> Context:
    """What a board with this query does about one changed record: show the card (insert,
    move or update it) or drop it (gone, not visible to this rep, or filtered out)."""
    gone: Context = {"kind": kind, "id": ident, "gone": True}
    try:
        card = await crm.board.card(kind, ident, actor)
    except (NotFound, Forbidden):
        return gone
    if kind == "deal":
        deal = await crm.deals.get(ident, actor)
        pipeline = bq.pipeline or crm.config.pipelines[0].code
        if deal.pipeline != pipeline:
            return gone
    if not admits(bq.filters, card):
        return gone
    return {"kind": kind, "id": ident, "column": card.column, "card": card}


def _sse(event: str, data: Context, ident: str | None = None) -> bytes:
    head = f"id: {ident}\n" if ident else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events for one open board: its kind, pipeline and filters in the query.

    The rep's rights apply to each change: a record they may not see only ever arrives as
    `gone` (its id, nothing of it). `gap`: changes may have been missed (the feed dropped
    some, or the browser reconnected): the board refreshes its columns."""
    session = await signed_in(request)
    if session is None:
        return json_refusal(401, "not signed in: ask the bot for a new /web link")
    try:
        bq = board_query(request)
    except Refused as err:
        return json_refusal(err.status, err.reason)
    crm, actor = crm_of(request), session.actor
    sub = crm.changes.subscribe()
    try:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            }
        )
        await response.prepare(request)
        await response.write(b"retry: 3000\n\n")
        if request.headers.get("Last-Event-ID"):
            # The feed keeps no history: what happened while away is refetched.
            await response.write(_sse("gap", {"reason": "reconnected"}))
        with contextlib.suppress(ConnectionResetError):  # the browser went away mid-write
            await _stream(request, response, sub, crm, actor, bq)
        return response
    finally:
        sub.close()


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    sub: Any,
    crm: Crm,
    actor: Actor,
    bq: BoardQuery,
) -> None:
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    closing = request.config_dict[CLOSING]
    while not closing.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return  # the browser went away
        try:
            item = await asyncio.wait_for(sub.get(), TICK_SECONDS)
        except TimeoutError:
            if loop.time() - quiet_since >= HEARTBEAT_SECONDS:
                if await signed_in(request) is None:
                    await response.write(_sse("signedout", {}))
                    return
                await response.write(b": keep-alive\n\n")
                quiet_since = loop.time()
            continue
        quiet_since = loop.time()
        kind = getattr(item, "kind", None)
        if kind is None:  # Missed
            await response.write(_sse("gap", {"reason": "missed"}, _next_id()))
            continue
        if kind == "activity":
            # A call-back set, done or snoozed changes its records' cards (due time, badge).
            for owner_kind, ident in await crm.board.cards_of_activity(item.id):
                if owner_kind == bq.kind:
                    await _send_card(request, response, crm, actor, bq, ident, None)
            continue
        if kind == bq.kind:
            await _send_card(request, response, crm, actor, bq, item.id, item.owner_id)


async def _send_card(
    request: web.Request,
    response: web.StreamResponse,
    crm: Crm,
    actor: Actor,
    bq: BoardQuery,
    ident: int,
    owner: int | None,
) -> None:
    """One `card` event: the card as this rep's board shows it, or `gone`. `owner` (from the
    change) spares a lookup of a record the rep may not see; None: ask the CRM."""
    if owner is not None and not _may_see(actor, owner):
        data: Context = {"kind": bq.kind, "id": ident, "gone": True}
    else:
        data = await _event_for(crm, actor, bq, bq.kind, ident)
    if "card" in data:
        card = data.pop("card")
        columns = await _column_names(request, bq)
        data["html"] = _card_html(request, card, columns)
    await response.write(_sse("card", data, _next_id()))


def _next_id() -> str:
    return f"{_RUN}-{next(_SEQ)}"


def routes() -> list[web.AbstractRouteDef]:
    return [
        web.get(BOARD, board, allow_head=False),
        web.get(f"{BOARD}/column", column, allow_head=False),
        web.get(f"{BOARD}/totals", totals, allow_head=False),
        web.post(f"{BOARD}/move", move),
        web.post(f"{BOARD}/move-form", move_form),
        web.get(f"{PREFIX}/events", events, allow_head=False),
    ]
