"""Splitting a batch into rounds (`crm.intake.rounds.split`): an event waits for the next
round when it shares anything an earlier event of its round reads or writes."""

from __future__ import annotations

from crm.intake.rounds import Item, split
from matching.model import Candidates
from tests.matching.factories import company, contact, deal, event, identities, lead


def item(n: int, phone: str, cands: Candidates, **fields: object) -> Item:
    """The n-th event of a batch: its own call and number, with these candidates."""
    it = Item(n, event(external_id=f"call-{n}", phones=(phone,), **fields), identities((phone,)))
    it.cands = cands
    return it


def test_events_sharing_only_a_found_client_or_its_open_items_wait_for_the_next_round() -> None:
    anna = contact(7, company=3, deals=(deal(11, contact=7),), repeat_leads=(lead(21),))
    items = [
        item(0, "+4930111", Candidates(contacts=(anna,))),
        item(1, "+4930222", Candidates(contacts=(contact(7),))),  # the same contact
        item(2, "+4930333", Candidates(companies=(company(9, deals=(deal(11),)),))),  # its deal
        item(3, "+4930444", Candidates(contacts=(contact(8, repeat_leads=(lead(21),)),))),
        item(4, "+4930555", Candidates(leads=(lead(21),))),  # the same lead
        item(5, "+4930666", Candidates(contacts=(contact(5),))),  # someone else
        item(6, "+4930111", Candidates()),  # the first event's number
    ]
    taken, waiting = split(items)
    assert [it.index for it in taken] == [0, 5]
    assert [it.index for it in waiting] == [1, 2, 3, 4, 6]


def test_mails_of_one_thread_wait_for_the_next_round() -> None:
    first = item(0, "+4930111", Candidates(), meta={"references": ("m-1",)})
    reply = item(1, "+4930222", Candidates(), meta={"in_reply_to": "m-1"})
    other = item(2, "+4930333", Candidates(), meta={"in_reply_to": "m-2"})
    taken, waiting = split([first, reply, other])
    assert [it.index for it in taken] == [0, 2]
    assert [it.index for it in waiting] == [1]
