"""A synthetic CRM of realistic proportions, written with bulk inserts (COPY on PostgreSQL).

Per 10 contacts: 2 companies (4 of the contacts belong to one), 10 phones, 7 emails, 5 leads
(the lead's own phone for the unlinked ones; 30% open), 3 deals (40% open).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def contact_phone(i: int) -> str:
    return f"+4930{i:08d}"


def lead_phone(i: int) -> str:
    return f"+4940{i:08d}"


def contact_email(i: int) -> str:
    return f"person{i}@example.com"


def _rows(n: int) -> dict[str, list[tuple[Any, ...]]]:
    companies = [(c + 1, f"Company {c}", None, None, T0, T0) for c in range(n // 5)]
    contacts, comms, leads, deals = [], [], [], []
    comm_id = 0
    for i in range(n):
        cid = i + 1
        company = (i // 2) + 1 if (i % 10) < 4 and (i // 2) < len(companies) else None
        when = T0 + timedelta(seconds=i)
        contacts.append((cid, f"Person {i}", None, None, company, None, None, when, when))
        comm_id += 1
        comms.append(
            (comm_id, "phone", contact_phone(i), contact_phone(i), "contact", cid, None, when)
        )
        if i % 10 < 7:
            comm_id += 1
            comms.append(
                (comm_id, "email", contact_email(i), contact_email(i), "contact", cid, None, when)
            )
    for lead_id, i in enumerate(range(0, n, 2), 1):
        is_open = lead_id % 10 < 3
        linked = lead_id % 2 == 0
        status, sem = (
            ("NEW", "process")
            if is_open
            else (("CONVERTED", "success") if lead_id % 3 else ("JUNK", "failure"))
        )
        when = T0 + timedelta(seconds=i)
        leads.append(
            (
                lead_id,
                f"Lead {lead_id}",
                status,
                sem,
                "CALL",
                linked,
                None,
                None,
                i + 1 if linked else None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                0,
                when,
                when,
            )
        )
        if not linked:
            comm_id += 1
            comms.append(
                (comm_id, "phone", lead_phone(i), lead_phone(i), "lead", lead_id, None, when)
            )
    deal_id = 0
    for i in range(0, n, 10):
        for k in range(3):
            deal_id += 1
            contact = i + k * 3 + 1
            if contact > n:
                continue
            is_open = deal_id % 10 < 4
            stage, sem = (
                (1, "process") if is_open else ((4, "success") if deal_id % 2 else (5, "failure"))
            )
            when = T0 + timedelta(seconds=i + k)
            deals.append(
                (
                    deal_id,
                    f"Deal {deal_id}",
                    1,
                    stage,
                    sem,
                    None,
                    "EUR",
                    contact,
                    None,
                    None,
                    False,
                    False,
                    False,
                    None,
                    "CALL",
                    when,
                    when,
                    None if is_open else when,
                )
            )
    return {
        "companies": companies,
        "contacts": contacts,
        "communications": comms,
        "leads": leads,
        "deals": deals,
    }


COLUMNS = {
    "companies": ("id", "title", "responsible_id", "comments", "created_at", "modified_at"),
    "contacts": (
        "id",
        "name",
        "first_name",
        "last_name",
        "company_id",
        "responsible_id",
        "comments",
        "created_at",
        "modified_at",
    ),
    "communications": (
        "id",
        "kind",
        "raw_value",
        "value",
        "owner_type",
        "owner_id",
        "label",
        "created_at",
    ),
    "leads": (
        "id",
        "title",
        "status",
        "status_semantic",
        "source",
        "is_return_customer",
        "name",
        "company_title",
        "contact_id",
        "company_id",
        "responsible_id",
        "comments",
        "junk_reason",
        "utm",
        "taken_at",
        "escalated_at",
        "escalation_count",
        "created_at",
        "modified_at",
    ),
    "deals": (
        "id",
        "title",
        "pipeline_id",
        "stage_id",
        "stage_semantic",
        "amount",
        "currency",
        "contact_id",
        "company_id",
        "lead_id",
        "is_return_customer",
        "is_repeated_approach",
        "origin_repeat",
        "responsible_id",
        "source",
        "created_at",
        "modified_at",
        "closed_at",
    ),
}


def _chunks(rows: list[tuple[Any, ...]], size: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def seed_sqlite(path: str, n: int) -> None:
    con = sqlite3.connect(path)
    try:
        for table, rows in _rows(n).items():
            cols = COLUMNS[table]
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            for chunk in _chunks(rows):
                con.executemany(
                    sql,
                    [
                        tuple(
                            v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, datetime) else v
                            for v in r
                        )
                        for r in chunk
                    ],
                )
        con.commit()
    finally:
        con.close()


async def seed_postgres(dsn: str, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        seeded = _rows(n)
        for table, rows in seeded.items():
            await conn.copy_records_to_table(table, records=rows, columns=list(COLUMNS[table]))
            await conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT COALESCE(MAX(id), 1) FROM {table}))"
            )
        # Only the tables filled here. An ANALYZE of a table still empty (activities, the
        # event log, …) records it as empty, and a connection's cached foreign-key check
        # plans then scan it row by row as it grows, for as long as the statistics stay (the
        # bench's server runs no autovacuum; in production autovacuum re-analyzes the table
        # after its first rows and the plans are made anew).
        await conn.execute(f"ANALYZE {', '.join(seeded)}")
    finally:
        await conn.close()
