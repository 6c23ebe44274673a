"""The intake bench sends the same events at every size but for where their records lie, so
the sizes compare the database's size and not two different loads."""

from __future__ import annotations

from benchmarks.intake import PERIOD, make_events
from benchmarks.seed import _rows


def _picked(number: str) -> int | None:
    """The seed index a known contact or lead number names (None: a new or excepted one)."""
    return int(number[5:]) if number.startswith(("+4930", "+4940")) else None


def test_the_events_differ_between_sizes_only_in_where_their_records_lie() -> None:
    small, large = make_events(10_000, 3_000), make_events(100_000, 3_000)
    assert [(e.channel, e.external_id) for e in small] == [
        (e.channel, e.external_id) for e in large
    ]
    moved: dict[int, int] = {}
    for a, b in zip(small, large, strict=True):
        if a.emails:
            i, j = (int(x.emails[0].removeprefix("person").split("@")[0]) for x in (a, b))
        elif (i_ := _picked(a.phones[0])) is not None:
            i, j = i_, _picked(b.phones[0]) or -1
            assert a.phones[0][:5] == b.phones[0][:5]
        else:
            assert a.phones == b.phones  # new and excepted numbers are the same
            continue
        # The same kind of record (the seed repeats its kinds every PERIOD contacts), in the
        # large database, and a record picked twice is picked twice there too.
        assert j % PERIOD == i % PERIOD and j < 100_000
        assert moved.setdefault(i, j) == j
    assert len(set(moved.values())) == len(moved) > 1_000


def test_the_seed_repeats_its_kinds_of_record_every_period() -> None:
    """What makes a moved pick find the same kind of record (`_spread`)."""
    rows = _rows(10 * PERIOD)
    leads, deals = rows["leads"], rows["deals"]  # a lead per 2 contacts, 3 deals per 10

    def lead(r: tuple[object, ...]) -> tuple[object, ...]:
        return (r[2], r[5])  # status, linked to a contact

    def deal(r: tuple[object, ...]) -> tuple[object, ...]:
        return (r[3], r[4])  # stage, its meaning

    for later in (PERIOD, 7 * PERIOD):
        assert [lead(r) for r in leads[: PERIOD // 2]] == [
            lead(r) for r in leads[later // 2 : (later + PERIOD) // 2]
        ]
        per = PERIOD // 10 * 3
        at = later // 10 * 3
        assert [deal(r) for r in deals[:per]] == [deal(r) for r in deals[at : at + per]]
