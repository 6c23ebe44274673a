"""The numbers a company's change drops from the caller cache (`crm.affected`): those of its
own phones, its contacts', its leads' and its contacts' leads', and no other company's."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from crm import affected
from crm.bulk import fetch
from crm.changes import Change
from crm.db import Database
from crm.facade import Crm
from crm.services.leads import LeadInput
from crm.services.records import ContactInput


async def _company(crm: Crm, name: str, prefix: str) -> tuple[int, set[str]]:
    """A company with two phones, a contact, a lead of its own and a lead of its contact (each
    with a phone); its id and those numbers."""
    own = (f"{prefix}01", f"{prefix}02")
    company = await crm.records.create_company(name, phones=own)
    contact = await crm.records.create_contact(
        ContactInput(name=f"{name} Kim", company_id=company.id, phones=(f"{prefix}03",))
    )
    await crm.leads.create(
        LeadInput(title=f"{name} order", company_id=company.id, phones=(f"{prefix}04",))
    )
    await crm.leads.create(
        LeadInput(title=f"{name} call", contact_id=contact.id, phones=(f"{prefix}05",))
    )
    return company.id, {*own, *(f"{prefix}0{k}" for k in (3, 4, 5))}


async def test_a_company_change_names_its_numbers_and_no_other_companys(crm: Crm) -> None:
    acme, acme_numbers = await _company(crm, "Acme", "+49303000")
    other, other_numbers = await _company(crm, "Other", "+49304000")
    sub = crm.changes.subscribe()
    await crm.records.update_company(acme, title="Acme Neu")
    async with asyncio.timeout(5):
        while not (isinstance(item := await sub.get(), Change) and item.kind == "company"):
            pass
    sub.close()
    assert item.id == acme and item.numbers is not None
    assert set(item.numbers) == acme_numbers
    assert not set(item.numbers) & other_numbers
    # Both companies at once (an intake batch): each number under its own company.
    pg = not crm.db.is_sqlite
    stmt = affected._numbers_query(False, True, False, pg, affected.CAP)
    async with crm.db.read() as s:
        rows = {tuple(r) for r in await s.execute(stmt, {"companies": sorted((acme, other))})}
    assert rows == {("company", acme, n) for n in acme_numbers} | {
        ("company", other, n) for n in other_numbers
    }


def _joined_scans(node: dict[str, Any], under_join: bool = False) -> list[str]:
    """The tables a plan reads inside a join of the same query level (InitPlans and SubPlans
    start a level of their own)."""
    if node.get("Parent Relationship") in ("InitPlan", "SubPlan"):
        under_join = False
    found = [node["Relation Name"]] if under_join and "Relation Name" in node else []
    joins = node["Node Type"] in ("Nested Loop", "Hash Join", "Merge Join")
    for child in node.get("Plans", ()):
        found += _joined_scans(child, under_join or joins)
    return found


async def test_on_postgresql_phones_are_read_by_their_holders_ids_not_joined(
    db: Database,
) -> None:
    """Whatever the statistics say, the holders' ids are found first (InitPlans) and each part
    reads phones by them: the planner has no join to start from every phone of an owner type
    (what it did on tables not analyzed yet, seconds per commit at a million contacts)."""
    if db.is_sqlite:
        pytest.skip("a PostgreSQL plan (SQLite's: tests/crm/test_query_plans.py)")
    sql, names, own = affected._pg_text(affected._numbers_query(True, True, True, True, 500))
    given = {"contacts": [1, 2], "companies": [3], "leads": [4, 5]}
    args = [given.get(n, own.get(n)) for n in names]
    async with db.read() as s:  # sent as `crm.affected` sends it, straight through asyncpg
        (row,) = await fetch(s, f"EXPLAIN (FORMAT JSON) {sql}", *args)
    plan = row[0]  # json decoded by the connection's codec
    assert "communications" in json.dumps(plan)
    assert "communications" not in _joined_scans(plan[0]["Plan"])


# sqlite_stat1 as ANALYZE wrote it on a million contacts with 100,000 companies (1-3 phones
# each), 60% of the contacts in one, and 500,000 leads.
_MILLION = (
    ("communications", "ix_communications_owner", "2066667 688889 2"),
    ("communications", "ix_communications_kind_value", "2066667 1033334 1"),
    ("contacts", "ix_contacts_company_id", "1000000 17"),
    ("leads", "ix_leads_contact_id", "500000 3"),
    ("leads", "ix_leads_company_id", "500000 5"),
)


async def test_on_sqlite_phones_are_read_by_their_holders_with_statistics_too(
    db: Database,
) -> None:
    """SQLite plans without statistics unless someone runs ANALYZE: with those of a large
    CRM too, every part searches the phones by (owner_type, owner_id), never by type alone
    (statistics that made the owner index look useless turn them to the (kind, value) one)."""
    if not db.is_sqlite:
        pytest.skip("a SQLite query plan")
    stmt = affected._numbers_query(True, True, True, False, 500).params(
        contacts=[1, 2], companies=[3], leads=[4, 5]
    )
    compiled = stmt.compile(db.engine, compile_kwargs={"literal_binds": True})
    async with db.engine.begin() as conn:  # statistics are read per connection: one for all
        await conn.exec_driver_sql("ANALYZE")
        for table, index, stat in _MILLION:
            await conn.exec_driver_sql(
                "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", (table, index, stat)
            )
        await conn.exec_driver_sql("ANALYZE sqlite_schema")  # loads them
        steps = [
            str(row[-1]) for row in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
        ]
    phones = [step for step in steps if "communications" in step]
    assert len(phones) == 7 and not any("SCAN" in step for step in steps), steps
    assert all("(owner_type=? AND owner_id=?)" in step for step in phones), phones
