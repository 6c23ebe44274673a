"""The charts drawn from a real report: the SVG carries titles, axis labels, series labels and
values as text; the PNG decodes at the documented size; output is stable between runs."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import replace
from datetime import date

from PIL import Image

from charts import render
from crm.dto import Actor
from crm.facade import Crm
from crm.services.stats import (
    ChannelDay,
    Funnel,
    NewVsRepeat,
    ReasonCount,
    StatsReport,
    TakeTime,
)
from tests.crm.test_stats import NOW, build


def _report(crm: Crm) -> StatsReport:
    week = crm.stats.period("week", NOW)
    mon, tue, wed = week.days
    return StatsReport(
        period=week,
        owner_id=None,
        inbound=(
            ChannelDay(mon, "call", 2),
            ChannelDay(mon, "email", 1),
            ChannelDay(tue, "telegram", 3),
            ChannelDay(wed, "email", 1),
        ),
        funnel=Funnel(leads=6, converted=2, deals=4, won=1),
        new_vs_repeat=NewVsRepeat(new=3, repeat=1, attached=1),
        take_team=TakeTime(None, "Team", 4, 120, 600),
        take_times=(TakeTime(1, "Rita", 3, 120, 300), TakeTime(2, "Sam", 1, 600, 600)),
        overdue_callbacks=1,
        lost_reasons=(ReasonCount("deal", "Price", 2), ReasonCount("lead", "", 1)),
        won=(),
        reps=(),
    )


async def test_each_chart_in_svg_names_its_series_and_values(crm: Crm) -> None:
    report = _report(crm)
    svg = {name: render.chart(name, report, "svg").decode() for name in render.CHARTS}
    inbound = svg["inbound"]
    for text in ("Inbound contacts per channel per day", "Contacts", "Day", "Channel"):
        assert text in inbound
    for label in ("Phone", "E-mail", "Telegram"):
        assert f">{label}<" in inbound
    assert "Mon 07.12" in inbound and ">3<" in inbound  # Monday's total
    assert "Leads converted" in svg["funnel"] and ">6<" in svg["funnel"]
    assert "Repeat client" in svg["new_vs_repeat"] and "1 (20%)" in svg["new_vs_repeat"]
    take = svg["take_time"]
    assert "Rita (3)" in take and "Team (4)" in take and "90th percentile" in take
    assert "2.0 min" in take and "10.0 min" in take
    lost = svg["lost_reasons"]
    assert "Deal lost: Price" in lost and "Lead junked: no reason" in lost
    # Deterministic: the same report draws the same bytes.
    assert render.chart("funnel", report, "svg") == svg["funnel"].encode()


async def test_names_and_reasons_with_dollar_signs_are_drawn_as_typed(crm: Crm) -> None:
    typed = replace(
        _report(crm),
        take_times=(TakeTime(1, r"Ann $\badcmd{$", 1, 60, 60),),
        lost_reasons=(ReasonCount("deal", "costs $5 more than $4", 1),),
    )
    take = render.chart("take_time", typed, "svg").decode()
    assert r"Ann $\badcmd{$ (1)" in take
    assert "Deal lost: costs $5 more than $4" in render.chart("lost_reasons", typed).decode()


async def test_png_decodes_at_the_documented_size(crm: Crm) -> None:
    report = _report(crm)
    one = Image.open(io.BytesIO(render.chart("inbound", report, "png")))
    assert (one.format, one.size) == ("PNG", (800, 450))
    both = await render.render(render.overview, report, "png")
    picture = Image.open(io.BytesIO(both))
    picture.load()
    assert picture.size == (1200, 800)


async def test_a_real_empty_and_a_real_full_report_draw(crm: Crm) -> None:
    empty = await crm.stats.report(crm.stats.period("month", NOW), now=NOW)
    for name in render.CHARTS:  # every panel says so rather than drawing empty bars
        svg = render.chart(name, empty, "svg").decode()
        assert render.EMPTY in svg and "%)" not in svg, name
    ids = await build(crm)
    mine = await crm.stats.report(crm.stats.period("week", NOW), Actor(ids["rita"], "rep"))
    svg = (await render.render(render.overview, mine, "svg")).decode()
    assert "Rita" in svg and date(2026, 12, 7).strftime("%a %d.%m") in svg


def test_importing_charts_loads_no_matplotlib() -> None:
    code = "import sys, charts.render; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
