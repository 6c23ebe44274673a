"""Team numbers (crm.stats) on SQLite and PostgreSQL, from hand-built records whose every
number is worked out below.

The week is Monday 7 to Wednesday 9 December 2026 in Berlin (UTC+1); "now" is Wednesday
13:00 local. An event at Sunday 23:30 UTC is Monday 00:30 in Berlin and counts on Monday.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from crm.dto import Actor
from crm.errors import Forbidden, InvalidInput
from crm.facade import Crm
from crm.models import Activity, Deal, InboundEventLog, Lead, Rep, Stage
from crm.services.stats import ChannelDay, Funnel, Money, NewVsRepeat, ReasonCount

NOW = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


async def build(crm: Crm) -> dict[str, int]:
    ids: dict[str, int] = {}
    async with crm.db.transaction() as s:
        for key, name, role in (
            ("rita", "Rita", "rep"),
            ("sam", "Sam", "rep"),
            ("sue", "Sue", "supervisor"),
        ):
            rep = Rep(name=name, role=role)
            s.add(rep)
            await s.flush()
            ids[key] = rep.id
        rita, sam = ids["rita"], ids["sam"]

        def lead(
            key: str,
            rep: int,
            created: datetime,
            taken_after: int | None,
            status: str = "IN_PROCESS",
            semantic: str = "process",
            **kw: Any,
        ) -> Lead:
            taken = created + timedelta(seconds=taken_after) if taken_after is not None else None
            row = Lead(
                title=key,
                status=status,
                status_semantic=semantic,
                source="CALL",
                responsible_id=rep,
                created_at=created,
                modified_at=created,
                taken_at=taken,
                **kw,
            )
            s.add(row)
            return row

        leads = {
            "L1": lead("L1", rita, at(7, 8), 60),
            "L2": lead("L2", rita, at(7, 9), 300, "CONVERTED", "success"),
            "L3": lead("L3", rita, at(8, 10), 120),
            "L4": lead("L4", sam, at(8, 11), 600, "JUNK", "failure", junk_reason="Spam"),
            "L5": lead("L5", sam, at(9, 8), None, "NEW"),
            # Created last week, taken this Monday: taken this week, no take time this week.
            "L6": lead("L6", rita, at(6, 10), 21 * 3600),
            # Sunday 23:30 UTC is Monday in Berlin.
            "L7": lead("L7", rita, at(6, 23, 30), None, "NEW"),
        }
        leads["L4"].modified_at = at(8, 12)
        await s.flush()
        ids.update({k: v.id for k, v in leads.items()})
        stages = {st.code: st for st in await s.scalars(select(Stage))}

        def deal(
            key: str,
            rep: int,
            created: datetime,
            stage: str,
            closed: datetime | None = None,
            **kw: Any,
        ) -> None:
            st = stages[stage]
            s.add(
                Deal(
                    title=key,
                    pipeline_id=st.pipeline_id,
                    stage_id=st.id,
                    stage_semantic=st.semantic,
                    responsible_id=rep,
                    created_at=created,
                    modified_at=created,
                    closed_at=closed,
                    **kw,
                )
            )

        deal(
            "D1",
            rita,
            at(7, 9, 30),
            "WON",
            at(8, 15),
            lead_id=ids["L2"],
            amount=Decimal(1000),
            currency="EUR",
        )
        deal("D2", rita, at(8, 9), "LOSE", at(9, 9), lost_reason="Price")
        deal("D3", sam, at(2, 9), "WON", at(9, 10), amount=Decimal("250.50"), currency="USD")
        deal("D4", sam, at(7, 12), "LOSE", at(9, 11))
        deal("D5", sam, at(7, 13), "NEGOTIATION")
        await s.flush()
        d2 = await s.scalar(select(Deal.id).where(Deal.title == "D2"))

        def event(
            n: int,
            channel: str,
            received: datetime,
            outcome: str,
            direction: str = "incoming",
            **refs: Any,
        ) -> None:
            s.add(
                InboundEventLog(
                    channel=channel,
                    external_id=f"e{n}",
                    received_at=received,
                    occurred_at=received,
                    direction=direction,
                    outcome=outcome,
                    reason="test",
                    payload={},
                    **refs,
                )
            )

        event(1, "call", at(6, 23, 30), "new_lead", lead_id=ids["L7"])
        event(2, "email", at(7, 9), "new_lead", lead_id=ids["L2"])
        event(3, "call", at(7, 10), "attached_lead", lead_id=ids["L2"])
        event(4, "telegram", at(8, 11), "new_repeat_lead", lead_id=ids["L4"])
        event(5, "call", at(8, 12), "ignored")
        event(6, "call", at(8, 13), "duplicate", lead_id=ids["L4"])
        event(7, "email", at(9, 9), "new_deal", deal_id=d2)
        event(8, "email", at(5, 9), "new_lead")  # last week
        event(9, "call", at(8, 14), "new_lead", direction="outgoing")

        def task(rep: int, due: datetime, done: bool = False) -> None:
            s.add(
                Activity(
                    kind="call", subject="Call back", due_at=due, done=done, responsible_id=rep
                )
            )

        task(rita, at(8, 9))  # overdue
        task(sam, at(8, 9), done=True)  # done: not overdue
        task(sam, at(10, 9))  # due tomorrow
    return ids


async def test_team_numbers_for_the_week(crm: Crm) -> None:
    ids = await build(crm)
    week = crm.stats.period("week", NOW)
    assert week.days == (date(2026, 12, 7), date(2026, 12, 8), date(2026, 12, 9))
    assert week.start == at(6, 23)
    report = await crm.stats.report(week, Actor(ids["sue"], "supervisor"), now=NOW)

    mon, tue, wed = week.days
    assert report.inbound == (
        ChannelDay(mon, "call", 2),
        ChannelDay(mon, "email", 1),
        ChannelDay(tue, "telegram", 1),
        ChannelDay(wed, "email", 1),
    )
    assert report.inbound_total == 5
    assert report.inbound_by_channel() == {"call": 2, "email": 2, "telegram": 1}
    assert report.new_vs_repeat == NewVsRepeat(new=3, repeat=1, attached=1)
    assert report.funnel == Funnel(leads=6, converted=1, deals=4, won=1)

    # Rita 60, 120, 300 s; Sam 600 s; the team 60, 120, 300, 600 (nearest rank).
    assert report.take_team is not None
    assert (report.take_team.taken, report.take_team.median_seconds) == (4, 120)
    assert report.take_team.p90_seconds == 600
    rita, sam = report.take_times
    assert (rita.rep_name, rita.taken, rita.median_seconds, rita.p90_seconds) == (
        "Rita",
        3,
        120,
        300,
    )
    assert (sam.rep_name, sam.taken, sam.median_seconds, sam.p90_seconds) == ("Sam", 1, 600, 600)

    assert report.overdue_callbacks == 1
    assert report.lost_reasons == (
        ReasonCount("deal", "", 1),
        ReasonCount("deal", "Price", 1),
        ReasonCount("lead", "Spam", 1),
    )
    assert report.won == (Money("EUR", Decimal("1000.00"), 1), Money("USD", Decimal("250.50"), 1))
    by_rep = {r.rep_name: r for r in report.reps}
    assert set(by_rep) == {"Rita", "Sam"}
    r = by_rep["Rita"]
    assert (r.new, r.taken, r.converted, r.won, r.lost, r.overdue) == (4, 4, 1, 1, 1, 1)
    m = by_rep["Sam"]
    assert (m.new, m.taken, m.converted, m.won, m.lost, m.overdue) == (2, 1, 0, 1, 1, 0)


async def test_a_rep_sees_only_their_own_numbers(crm: Crm) -> None:
    ids = await build(crm)
    week = crm.stats.period("week", NOW)
    rita = Actor(ids["rita"], "rep")
    mine = await crm.stats.report(week, rita, now=NOW)
    assert mine.owner_id == ids["rita"]
    assert [r.rep_name for r in mine.reps] == ["Rita"]
    assert mine.inbound_total == 4  # e1, e2, e3 on her leads, e7 on her deal
    assert mine.new_vs_repeat == NewVsRepeat(new=3, repeat=0, attached=1)
    assert mine.funnel == Funnel(leads=4, converted=1, deals=2, won=1)
    assert mine.won == (Money("EUR", Decimal("1000.00"), 1),)
    assert [t.rep_name for t in mine.take_times] == ["Rita"]
    with pytest.raises(Forbidden):
        await crm.stats.report(week, rita, owner_id=ids["sam"], now=NOW)
    # A supervisor may ask for one rep.
    sams = await crm.stats.report(week, Actor(ids["sue"], "supervisor"), owner_id=ids["sam"])
    assert [r.rep_name for r in sams.reps] == ["Sam"]
    assert sams.lost_reasons == (ReasonCount("deal", "", 1), ReasonCount("lead", "Spam", 1))


async def test_periods_today_and_month_and_refusals(crm: Crm) -> None:
    ids = await build(crm)
    sue = Actor(ids["sue"], "supervisor")
    today = await crm.stats.report(crm.stats.period("today", NOW), sue, now=NOW)
    assert today.inbound == (ChannelDay(date(2026, 12, 9), "email", 1),)
    assert today.funnel == Funnel(leads=1, converted=0, deals=0, won=0)
    month = crm.stats.period("Month", NOW)
    assert (month.days[0], month.days[-1]) == (date(2026, 12, 1), date(2026, 12, 9))
    report = await crm.stats.report(month, sue, now=NOW)
    assert report.inbound_total == 6  # last Saturday's mail too
    assert report.funnel.deals == 5
    with pytest.raises(InvalidInput):
        crm.stats.period("year", NOW)
    with pytest.raises(InvalidInput):
        crm.stats.days(date(2026, 1, 1), date(2026, 12, 31))
    with pytest.raises(InvalidInput):
        await crm.stats.report(month, sue, owner_id=999)


async def test_an_empty_crm_has_zeros(crm: Crm) -> None:
    report = await crm.stats.report(crm.stats.period("week"))
    assert report.inbound == ()
    assert report.funnel == Funnel(0, 0, 0, 0)
    assert report.take_team is None and report.take_times == ()
    assert report.reps == () and report.won == () and report.overdue_callbacks == 0


async def test_a_lost_deal_keeps_its_reason_until_reopened(crm: Crm) -> None:
    deal = await crm.deals.create("Boxes")
    lost = await crm.deals.lose(deal.id, reason="  Competitor ")
    assert lost.lost_reason == "Competitor"
    week = await crm.stats.report(crm.stats.period("today"))
    assert week.reasons("deal") == (ReasonCount("deal", "Competitor", 1),)
    reopened = await crm.deals.reopen(deal.id)
    assert reopened.lost_reason is None
