"""Each chart of the dashboard as SVG or PNG bytes, and the bot's overview of four of them.

Accessible by construction: every chart has a title and axis labels, every bar its value
written on it, and series differ by hatch pattern as well as colour. Output is deterministic
(no dates in the metadata, fixed SVG ids, SVG text kept as text so it can be read and tested).

Drawing is CPU-bound: `render` runs a chart in a worker thread. Only the object API is used
(`Figure`, never pyplot), so threads do not share a current figure.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from crm.services.stats import StatsReport
from matching.channels import label_of

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Format = Literal["svg", "png"]
Draw = Callable[["Axes", StatsReport], None]

DPI = 100
SIZE = (8.0, 4.5)  # inches: 800 × 450 px at DPI
OVERVIEW_SIZE = (12.0, 8.0)  # 1200 × 800 px: fits a Telegram photo without scaling down
HATCHES = ("", "//", "..", "xx", "\\\\", "oo", "--", "++")
# Colour-blind safe (Okabe–Ito); the hatches carry the meaning as well.
COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
EMPTY = "Nothing in this period"

_setup = threading.Lock()
_ready = False


def _matplotlib() -> None:
    """Load matplotlib once, headless, with output settings that make files comparable."""
    global _ready
    with _setup:
        if _ready:
            return
        import matplotlib

        matplotlib.use("Agg")
        matplotlib.rcParams.update(
            {
                "svg.fonttype": "none",  # text stays text: readable by screen readers and tests
                "svg.hashsalt": "leadbot",  # stable element ids
                # Rep names and typed lost reasons are text, never TeX: "$5 or $\x" would
                # be parsed as math (and fail the whole chart).
                "text.parse_math": False,
                "font.size": 10,
                "axes.titlesize": 12,
                "axes.titleweight": "bold",
                "axes.spines.top": False,
                "axes.spines.right": False,
            }
        )
        _ready = True


def _figure(size: tuple[float, float], rows: int = 1, cols: int = 1) -> tuple[Figure, Any]:
    _matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig: Figure, fmt: Format) -> bytes:
    out = io.BytesIO()
    meta: dict[str, Any] = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(out, format=fmt, dpi=DPI, metadata=meta)
    return out.getvalue()


def _empty(ax: Axes) -> None:
    ax.text(0.5, 0.5, EMPTY, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _day(d: date, many: bool) -> str:
    return d.strftime("%d.%m") if many else d.strftime("%a %d.%m")


def _whole_numbers(axis: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _hbars(
    ax: Axes, labels: Sequence[str], values: Sequence[float], text: Sequence[str] = ()
) -> None:
    """Horizontal bars, first label on top, each with its value (or its `text`) written after
    it; the empty note instead when every value is 0."""
    if not any(values):
        _empty(ax)
        return
    ys = list(range(len(labels)))[::-1]
    bars = ax.barh(ys, values, color=COLOURS[0], edgecolor="black", linewidth=0.5)
    ax.set_yticks(ys, labels)
    ax.bar_label(bars, labels=list(text or map(str, values)), padding=3)
    ax.set_xlim(0, max(max(values), 1) * 1.2)
    _whole_numbers(ax.xaxis)


# --- the charts -----------------------------------------------------------------------------


def draw_inbound(ax: Axes, report: StatsReport) -> None:
    ax.set_title("Inbound contacts per channel per day")
    ax.set_xlabel("Day")
    ax.set_ylabel("Contacts")
    if not report.inbound:
        _empty(ax)
        return
    days = report.period.days
    index = {d: i for i, d in enumerate(days)}
    bottom = [0] * len(days)
    for n, channel in enumerate(report.inbound_by_channel()):
        heights = [0] * len(days)
        for c in report.inbound:
            if c.channel == channel:
                heights[index[c.day]] = c.count
        ax.bar(
            range(len(days)),
            heights,
            bottom=bottom,
            label=label_of(channel),
            color=COLOURS[n % len(COLOURS)],
            hatch=HATCHES[n % len(HATCHES)],
            edgecolor="black",
            linewidth=0.5,
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for x, total in enumerate(bottom):
        if total:
            ax.annotate(
                str(total),
                (x, total),
                ha="center",
                va="bottom",
                xytext=(0, 2),
                textcoords="offset points",
            )
    many = len(days) > 7
    step = max(1, len(days) // 12)
    ticks = list(range(0, len(days), step))
    ax.set_xticks(ticks, [_day(days[i], many) for i in ticks])
    # Slanted, so a week's "Mon 07.12" labels do not run into each other in a small panel.
    for label in ax.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")
    ax.set_ylim(0, max(bottom) * 1.2)
    _whole_numbers(ax.yaxis)
    ax.legend(title="Channel", loc="upper left", bbox_to_anchor=(1, 1), frameon=False)


def draw_funnel(ax: Axes, report: StatsReport) -> None:
    f = report.funnel
    ax.set_title("Funnel: lead → deal → won")
    ax.set_xlabel("Records created in the period")
    steps = ("Leads", "Leads converted", "Deals", "Deals won")
    _hbars(ax, steps, (f.leads, f.converted, f.deals, f.won))


def draw_new_vs_repeat(ax: Axes, report: StatsReport) -> None:
    n = report.new_vs_repeat
    ax.set_title("New vs repeat contacts")
    ax.set_xlabel("Inbound contacts")
    parts = ("New person", "Repeat client", "Added to an open record")
    counts = (n.new, n.repeat, n.attached)
    total = sum(counts) or 1  # all 0: no bars, no shares
    _hbars(ax, parts, counts, [f"{v} ({round(100 * v / total)}%)" for v in counts])


def _minutes(seconds: float) -> str:
    if seconds < 60:  # a rep at the screen takes within seconds: "0.0 min" would hide it
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def draw_take_time(ax: Axes, report: StatsReport) -> None:
    ax.set_title("Time to take a lead (speed to lead)")
    ax.set_xlabel("Minutes from the lead's arrival to a rep taking it")
    rows = list(report.take_times)
    if report.take_team is not None and len(rows) > 1:
        rows.append(report.take_team)
    if not rows:
        _empty(ax)
        return
    ys = list(range(len(rows)))[::-1]
    height = 0.38
    for n, (name, value) in enumerate(
        (("median", "median_seconds"), ("90th percentile", "p90_seconds"))
    ):
        seconds = [getattr(t, value) for t in rows]
        bars = ax.barh(
            [y + (height / 2 if n == 0 else -height / 2) for y in ys],
            [s / 60 for s in seconds],
            height=height,
            label=name,
            color=COLOURS[n],
            hatch=HATCHES[n],
            edgecolor="black",
            linewidth=0.5,
        )
        ax.bar_label(bars, labels=[_minutes(s) for s in seconds], padding=3, fontsize=8)
    ax.set_yticks(ys, [f"{t.rep_name} ({t.taken})" for t in rows])
    ax.set_ylabel("Rep (leads taken)")
    ax.set_xlim(0, max(t.p90_seconds for t in rows) / 60 * 1.25 or 1)
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.18), ncols=2, frameon=False)


def draw_lost_reasons(ax: Axes, report: StatsReport) -> None:
    ax.set_title("Lost deals and junked leads by reason")
    ax.set_xlabel("Count")
    top = report.lost_reasons[:8]
    kind = {"deal": "Deal lost", "lead": "Lead junked"}
    labels = [f"{kind[r.kind]}: {r.reason or 'no reason'}"[:40] for r in top]
    _hbars(ax, labels, [r.count for r in top])


CHARTS: dict[str, Draw] = {
    "inbound": draw_inbound,
    "funnel": draw_funnel,
    "new_vs_repeat": draw_new_vs_repeat,
    "take_time": draw_take_time,
    "lost_reasons": draw_lost_reasons,
}
OVERVIEW = ("inbound", "funnel", "take_time", "lost_reasons")


def chart(name: str, report: StatsReport, fmt: Format = "svg") -> bytes:
    """One chart of `CHARTS` (800 × 450 px)."""
    fig, axes = _figure(SIZE)
    CHARTS[name](axes[0][0], report)
    return _save(fig, fmt)


def overview(report: StatsReport, fmt: Format = "png") -> bytes:
    """Four charts in one picture (1200 × 800 px), the bot's /stats photo."""
    fig, axes = _figure(OVERVIEW_SIZE, 2, 2)
    for ax, name in zip(axes.flat, OVERVIEW, strict=True):
        CHARTS[name](ax, report)
    who = "the team"
    if report.owner_id is not None:
        who = next((r.rep_name for r in report.reps if r.rep_id == report.owner_id), "one rep")
    fig.suptitle(f"Leadbot: {report.period.label}, {who}", fontsize=13)
    return _save(fig, fmt)


async def render(draw: Callable[..., bytes], *args: Any) -> bytes:
    """`chart` or `overview` in a worker thread: drawing takes ~0.1–0.5 s of CPU."""
    return await asyncio.to_thread(draw, *args)
