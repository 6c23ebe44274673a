"""`/stats [today|week|month] [@rep | rep id]`: the numbers as text, the charts as a photo.

A rep sees their own numbers; a supervisor or admin the team's with a line per rep, or one
rep's. The CRM enforces that (`crm.stats`); this module parses, words and draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.clock import Clock
from bot.commands import actor_of, find_rep
from bot.views import Rendered, esc
from charts import render
from crm.dto import RepView
from crm.errors import InvalidInput
from crm.facade import Crm
from crm.services.stats import PERIODS, ReasonCount, StatsReport, TakeTime
from matching.channels import label_of

USAGE = "usage: /stats [today | week | month] [@rep or rep number]"
MAX_REPS = 30  # per-rep lines in one message (Telegram takes 4096 characters)
TITLES = {"today": "today", "week": "this week", "month": "this month"}


@dataclass(frozen=True, slots=True)
class Pictured(Rendered):
    """A reply with a picture after its text."""

    photo: bytes = b""  # PNG
    caption: str = ""


def minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def _take(t: TakeTime | None) -> str:
    if t is None:
        return "—"
    return f"median {minutes(t.median_seconds)}, p90 {minutes(t.p90_seconds)}"


def _reasons(reasons: Sequence[ReasonCount], top: int = 3) -> str:
    return ", ".join(f"{esc(r.reason or 'no reason')} {r.count}" for r in reasons[:top])


def summary(report: StatsReport, title: str, who: str, per_rep: bool) -> str:
    f, nvr = report.funnel, report.new_vs_repeat
    taken = sum(r.taken for r in report.reps)
    converted = sum(r.converted for r in report.reps)
    won = sum(m.deals for m in report.won)
    lost = sum(r.count for r in report.reasons("deal"))
    money = "; ".join(f"{m.amount:,.2f} {esc(m.currency)}" for m in report.won)
    lines = [
        f"📊 <b>{esc(title)}</b> ({esc(report.period.label)}), {esc(who)}",
        f"New leads: {f.leads} · taken: {taken} · time to take: {_take(report.take_team)}",
        f"Converted: {converted} · won: {won}" + (f" ({money})" if money else "")
        + f" · lost: {lost}",
    ]  # fmt: skip
    if report.reasons("deal"):
        lines.append(f"Lost because: {_reasons(report.reasons('deal'))}")
    if report.reasons("lead"):
        lines.append(f"Junk: {_reasons(report.reasons('lead'))}")
    channels = ", ".join(f"{esc(label_of(c))} {n}" for c, n in report.inbound_by_channel().items())
    lines.append(
        f"Inbound: {report.inbound_total} ({nvr.new} new, {nvr.repeat} repeat, "
        f"{nvr.attached} on open records)" + (f" — {channels}" if channels else "")
    )
    lines.append(f"Overdue call-backs: {report.overdue_callbacks}")
    if per_rep and report.reps:
        takes = {t.rep_id: t for t in report.take_times}
        lines += ["", "<b>Per rep</b>"]
        for r in report.reps[:MAX_REPS]:
            take = takes.get(r.rep_id)
            lines.append(
                f"{esc(r.rep_name)}: new {r.new}, taken {r.taken}, converted {r.converted}, "
                f"won {r.won}, lost {r.lost}, overdue {r.overdue}"
                + (f", takes in {minutes(take.median_seconds)}" if take else "")
            )
        if len(report.reps) > MAX_REPS:
            more = len(report.reps) - MAX_REPS
            lines.append(f"… and {more} more; one rep's numbers: /stats week @name")
    return "\n".join(lines)


def parse(args: Sequence[str], reps: Sequence[RepView]) -> tuple[str, RepView | None]:
    """(period, rep asked for) from the arguments, in any order."""
    period, who = "today", None
    for token in args:
        low = token.lower()
        if low in PERIODS:
            period = low
        elif who is None:
            who = find_rep(token, reps, USAGE)
        else:
            raise InvalidInput(USAGE)
    return period, who


class StatsCommand:
    def __init__(self, crm: Crm, clock: Clock) -> None:
        self.crm = crm
        self.clock = clock

    async def run(self, rep: RepView, args: Sequence[str]) -> Rendered:
        team = rep.role in ("supervisor", "admin")
        reps = await self.crm.reps.all() if args else []
        name, asked = parse(args, reps)
        now = self.clock.now()
        report = await self.crm.stats.report(
            self.crm.stats.period(name, now),
            actor_of(rep),
            owner_id=asked.id if asked else None,
            now=now,
        )
        who = asked.name if asked else ("the team" if team else rep.name)
        title = f"Numbers {TITLES[name]}"
        text = summary(report, title, who, per_rep=team and asked is None)
        photo = await render.render(render.overview, report, "png")
        return Pictured(text, photo=photo, caption=f"{title}, {who}")
