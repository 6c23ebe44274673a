"""The candidate repository on a real database: a contact's company comes with the contact,
in the same fixed handful of queries however many events a round holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from crm.config import CrmConfig
from crm.db import Database
from crm.repository import SqlCandidateRepository
from crm.services.deals import Deals
from crm.services.pipelines import sync_pipelines
from crm.services.records import ContactInput, Records
from matching.model import ClientKind, CommKind, Identity


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL statements the engine runs inside the block."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)


async def _colleagues(db: Database, n: int) -> list[Identity]:
    """`n` contacts, each of a company with an open deal that holds no phone itself."""
    config = CrmConfig()
    async with db.transaction() as s:
        await sync_pipelines(s, config)
    records, deals = Records(db, "DE"), Deals(db, config)
    phones = []
    for i in range(n):
        company = await records.create_company(f"Firm {i}")
        phone = f"+4930555{i:04d}"
        await records.create_contact(
            ContactInput(name=f"Person {i}", phones=(phone,), company_id=company.id)
        )
        await deals.create(f"Deal {i}", company_id=company.id)
        phones.append(Identity(CommKind.PHONE, phone))
    return phones


async def test_a_contacts_company_is_a_candidate_with_its_open_deals(db: Database) -> None:
    [phone] = await _colleagues(db, 1)
    async with db.read() as s:
        found = await SqlCandidateRepository(s).clients_by_identities([phone])
    contact = next(c for c in found if c.kind is ClientKind.CONTACT)
    company = next(c for c in found if c.kind is ClientKind.COMPANY)
    assert (contact.company_id, contact.matched_by) == (company.id, (phone,))
    assert company.matched_by == ()  # found through its contact
    assert company.hit_order == contact.hit_order
    assert [d.title for d in company.open_deals] == ["Deal 0"] and contact.open_deals == ()


async def test_preloading_many_contacts_and_their_companies_takes_no_more_queries(
    db: Database,
) -> None:
    phones = await _colleagues(db, 12)
    counts = []
    for wanted in (phones[:1], phones):
        async with db.transaction() as s:  # as intake reads them
            repo = SqlCandidateRepository(s)
            with statements(db) as seen:
                await repo.preload(wanted)
                found = await repo.clients_by_identities(wanted)
            counts.append(len(seen))
        assert len([c for c in found if c.kind is ClientKind.COMPANY]) == len(wanted)
    assert 0 < counts[0] == counts[1] <= 6, counts


async def test_the_reads_are_built_once_and_each_preload_finds_its_own(db: Database) -> None:
    """The preload's statements are shared by every batch, only their ids change: a second
    batch (another session, other identities) finds its own clients, none of the first's,
    and a batch of no known client finds none."""
    phones = await _colleagues(db, 3)
    stranger = Identity(CommKind.PHONE, "+4930555999")
    seen: list[set[str]] = []
    for wanted in ([phones[0]], [phones[1], phones[2]], [stranger]):
        async with db.read() as s:
            found = await SqlCandidateRepository(s).clients_by_identities(wanted)
        seen.append({c.name for c in found if c.kind is ClientKind.CONTACT})
        assert all(c.open_deals for c in found if c.kind is ClientKind.COMPANY)
    assert seen == [{"Person 0"}, {"Person 1", "Person 2"}, set()]
