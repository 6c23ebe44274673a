"""find_candidates against a small in-memory implementation of our own repository port."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from matching.finder import find_candidates
from matching.model import (
    ClientCandidate,
    CommKind,
    EventIdentities,
    Identity,
    LeadRef,
    MatchSettings,
    PhoneNumber,
)
from tests.matching.factories import (
    EMAIL_ID,
    PHONE,
    PHONE_ID,
    company,
    contact,
    deal,
    identities,
    lead,
)


@dataclass
class MemoryRepository:
    """Returns the records whose `matched_by` meets the asked identities, and logs calls."""

    clients: list[ClientCandidate] = field(default_factory=list)
    leads: list[LeadRef] = field(default_factory=list)
    calls: list[tuple[str, tuple[Identity, ...], bool | None]] = field(default_factory=list)

    async def clients_by_identities(
        self, identities: Sequence[Identity]
    ) -> Sequence[ClientCandidate]:
        self.calls.append(("clients", tuple(identities), None))
        return [c for c in self.clients if set(c.matched_by) & set(identities)]

    async def leads_by_identities(
        self, identities: Sequence[Identity], include_closed: bool
    ) -> Sequence[LeadRef]:
        self.calls.append(("leads", tuple(identities), include_closed))
        return [
            lead
            for lead in self.leads
            if set(lead.matched_by) & set(identities) and (include_closed or lead.is_open)
        ]


async def test_nothing_matchable_means_no_lookup() -> None:
    repo = MemoryRepository(clients=[contact(1)])
    ids = EventIdentities(phones=(PhoneNumber("12", None),))
    found = await find_candidates(repo, ids, MatchSettings())
    assert (found.contacts, found.companies, found.leads) == ((), (), ())
    assert repo.calls == []


async def test_contacts_and_companies_are_split_and_ranked() -> None:
    repo = MemoryRepository(
        clients=[
            contact(1, hit=0),
            company(5, hit=1),
            contact(2, hit=2, deals=(deal(20),)),
            company(6, hit=3, via=(EMAIL_ID,)),
            contact(3, via=(Identity(CommKind.PHONE, "+4940999"),)),  # not asked for
        ]
    )
    found = await find_candidates(repo, identities(emails=("anna@example.com",)), MatchSettings())
    assert [c.id for c in found.contacts] == [2, 1]
    assert [c.id for c in found.companies] == [5, 6]


async def test_lookup_uses_every_matchable_identity_including_text_hints() -> None:
    repo = MemoryRepository()
    ids = identities(phones=(PHONE,), emails=("anna@example.com",), hints=("+491711234567",))
    await find_candidates(repo, ids, MatchSettings())
    assert [call[1] for call in repo.calls] == [ids.matchable(), ids.matchable()]
    assert len(ids.matchable()) == 3


async def test_only_open_leads_unless_traditional_mode() -> None:
    leads = [lead(1, is_open=False, modified=5), lead(2, modified=1), lead(3, modified=3)]
    repo = MemoryRepository(leads=leads)
    found = await find_candidates(repo, identities(), MatchSettings())
    assert [x.id for x in found.leads] == [3, 2]
    assert found.closed_lead is not None and found.closed_lead.id == 1  # named in the reason

    traditional = MatchSettings(repeat_sales=False, traditional_mode=True)
    found = await find_candidates(repo, identities(), traditional)
    assert [x.id for x in found.leads] == [1, 3, 2]
    assert found.closed_lead is None  # a candidate itself


async def test_traditional_flag_is_ignored_while_repeat_sales_is_on() -> None:
    repo = MemoryRepository(leads=[lead(1, is_open=False)])
    found = await find_candidates(repo, identities(), MatchSettings(traditional_mode=True))
    assert found.leads == ()


async def test_the_newest_closed_lead_is_kept_for_the_reason() -> None:
    leads = [lead(4, is_open=False, modified=1), lead(5, is_open=False, modified=7, junked=True)]
    found = await find_candidates(MemoryRepository(leads=leads), identities(), MatchSettings())
    assert found.leads == ()
    assert found.closed_lead == leads[1]


async def test_closed_leads_from_a_sloppy_repository_are_dropped() -> None:
    class LeakyRepository(MemoryRepository):
        async def leads_by_identities(
            self, identities: Sequence[Identity], include_closed: bool
        ) -> Sequence[LeadRef]:
            return self.leads

    repo = LeakyRepository(leads=[lead(1, is_open=False), lead(2)])
    found = await find_candidates(repo, identities(), MatchSettings())
    assert [x.id for x in found.leads] == [2]
    assert PHONE_ID in found.leads[0].matched_by
