"""The dashboard (/app/dashboard): the team numbers of crm.stats as text and the charts of
charts/ as inline SVG, for a period and an owner chosen in the URL.

    /app/dashboard?period=week                         today | week | month
    /app/dashboard?period=custom&from=2026-12-01&to=2026-12-06
    /app/dashboard?period=month&owner=3                one rep (supervisors and admins)

The service decides whose numbers an actor may see: a rep always gets their own, and asking
for another rep's is refused there (403), not only hidden here.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import date

from aiohttp import web
from markupsafe import Markup

from charts.render import CHARTS, chart, render
from console.web import PREFIX, Context, Refused, crm_of, current_actor, page
from crm.services.stats import PERIODS, Period, StatsReport
from matching.channels import label_of

CUSTOM = "custom"
# matplotlib's SVG starts with an XML declaration and a DOCTYPE: inline, only <svg …> counts.
_SVG_START = re.compile(rb"<svg\b")


@dataclass(frozen=True, slots=True)
class Filters:
    period: str  # today | week | month | custom
    first: str  # the custom range as typed (YYYY-MM-DD), "" otherwise
    last: str
    owner: int | None


def _filters(request: web.Request) -> Filters:
    q = request.query
    period = q.get("period", "week")
    if period not in (*PERIODS, CUSTOM):
        raise Refused(422, f"unknown period “{period[:20]}”: use today, week, month or custom")
    raw_owner = q.get("owner", "")
    if raw_owner and not raw_owner.isdigit():
        raise Refused(422, "owner must be a rep's number")
    owner = int(raw_owner) if raw_owner else None
    first, last = q.get("from", ""), q.get("to", "")
    return Filters(period, first, last, owner)


def _day(value: str, what: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Refused(422, f"the {what} day must be a date like 2026-12-01") from None


def _period(request: web.Request, f: Filters) -> Period:
    stats = crm_of(request).stats
    if f.period != CUSTOM:
        return stats.period(f.period)
    if not f.first or not f.last:
        raise Refused(422, "a custom period needs a first and a last day")
    return stats.days(_day(f.first, "first"), _day(f.last, "last"))


def inline_svg(svg: bytes) -> Markup:
    """matplotlib's SVG, ready to sit in the page: from `<svg` on. Its text is our own
    (chart titles, channel labels, rep names escaped by matplotlib's SVG writer)."""
    found = _SVG_START.search(svg)
    if found is None:
        raise ValueError("not an SVG document")
    return Markup(svg[found.start() :].decode())


async def charts_of(report: StatsReport) -> dict[str, Markup]:
    """Every dashboard chart as inline SVG, drawn in worker threads side by side."""
    drawn = await asyncio.gather(*(render(chart, name, report, "svg") for name in CHARTS))
    return {name: inline_svg(svg) for name, svg in zip(CHARTS, drawn, strict=True)}


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


@page("dashboard.html")
async def dashboard(request: web.Request) -> Context:
    crm, actor = crm_of(request), current_actor(request)
    f = _filters(request)
    report = await crm.stats.report(_period(request, f), actor, owner_id=f.owner)
    # Only supervisors and admins choose an owner; a rep's numbers are always their own.
    reps = await crm.reps.all() if actor.sees_everything else []
    owner = None if report.owner_id is None else await crm.reps.get(report.owner_id)
    return {
        "title": "Dashboard",
        "filters": f,
        "periods": PERIODS,
        "report": report,
        "charts": await charts_of(report),
        "channels": [(label_of(c), n) for c, n in report.inbound_by_channel().items()],
        "reps": reps,
        "who": "the team" if owner is None else owner.name,
        "take_of": {t.rep_id: t for t in report.take_times},
        "minutes": minutes,
    }


def routes() -> list[web.AbstractRouteDef]:
    return [web.get(f"{PREFIX}/dashboard", dashboard, allow_head=False)]
