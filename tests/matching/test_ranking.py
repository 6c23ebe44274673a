"""Which matched client counts as "the client" (Bitrix24 R2.5)."""

from __future__ import annotations

import random

from matching.model import ClientCandidate
from matching.ranking import rank_clients, rank_groups
from tests.matching.factories import company, contact, deal, lead


def ids(ranked: list[ClientCandidate]) -> list[int]:
    return [c.id for c in ranked]


def test_open_deal_beats_repeat_lead_beats_first_hit() -> None:
    plain = contact(1, hit=0)
    with_lead = contact(2, hit=1, repeat_leads=(lead(20, repeat=True, modified=9),))
    with_deal = contact(3, hit=2, deals=(deal(30, modified=1),))
    assert ids(rank_clients([plain, with_lead, with_deal])) == [3, 2, 1]


def test_most_recently_modified_open_deal_wins() -> None:
    older = contact(1, hit=0, deals=(deal(10, modified=2),))
    newer = contact(2, hit=1, deals=(deal(11, modified=1), deal(12, modified=5)))
    assert ids(rank_clients([older, newer])) == [2, 1]


def test_deal_ties_go_to_creation_date_then_deal_id() -> None:
    created_late = contact(1, hit=0, deals=(deal(10, modified=3, created=2),))
    created_early = contact(2, hit=1, deals=(deal(11, modified=3, created=1),))
    higher_id = contact(3, hit=2, deals=(deal(12, modified=3, created=2),))
    assert ids(rank_clients([created_early, created_late, higher_id])) == [3, 1, 2]


def test_newest_repeat_lead_first() -> None:
    old = contact(1, hit=0, repeat_leads=(lead(10, modified=1),))
    new = contact(2, hit=1, repeat_leads=(lead(11, modified=4),))
    assert ids(rank_clients([old, new])) == [2, 1]


def test_nothing_open_keeps_lookup_order() -> None:
    assert ids(rank_clients([contact(5, hit=2), contact(9, hit=0), contact(7, hit=1)])) == [9, 7, 5]


def test_ranking_does_not_depend_on_input_order() -> None:
    cands = [
        contact(1, hit=0),
        contact(2, hit=0),
        contact(3, hit=1, deals=(deal(30, modified=1),)),
        contact(4, hit=2, deals=(deal(40, modified=1),)),
        contact(5, hit=0, repeat_leads=(lead(50),)),
    ]
    expected = ids(rank_clients(cands))
    rng = random.Random(7)
    for _ in range(20):
        shuffled = cands[:]
        rng.shuffle(shuffled)
        assert ids(rank_clients(shuffled)) == expected
    assert expected == [4, 3, 5, 1, 2]


def test_a_company_with_its_contacts_ranks_by_any_members_newest_open_item() -> None:
    acme = [company(5, hit=0), contact(3, company=5, hit=0, deals=(deal(30, modified=4),))]
    solo = [contact(8, hit=1, deals=(deal(31, modified=2),))]
    plain = [contact(9, hit=0)]
    ranked = rank_groups([plain, solo, acme])
    assert [[c.id for c in g] for g in ranked] == [[5, 3], [8], [9]]
