"""The SQLite caller lookup in steps (`sqlite_caller_row`) answers exactly as the single
statement (`caller_sql`) over random small CRMs, and only probes indexes."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from crm.models import Base
from crm.services.telephony import (
    MAX_HOLDERS,
    SQLITE_STEPS,
    caller_sql,
    sqlite_caller_row,
    warm_sqlite_steps,
)

NUMBERS = [f"+49301000{k:02d}" for k in range(8)]
# Text as SQLAlchemy writes it, some without microseconds (another length), and many ties.
STAMPS = [
    "2026-01-01 10:00:00.000000",
    "2026-01-01 10:00:00",
    "2026-01-01 10:00:00.500000",
    "2026-01-02 09:00:00.000000",
    "2026-01-02 09:00:00.000001",
]
NOW = "2026-01-01 00:00:00"


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "crm.db"
    engine = create_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    engine.dispose()
    connection = sqlite3.connect(path, isolation_level=None)
    yield connection
    connection.close()


def _fill(conn: sqlite3.Connection, rng: random.Random) -> None:
    """A random small CRM: numbers on contacts, companies and leads (some dangling, some
    shared), contacts of companies (some missing), open and closed leads and deals."""
    for table in ("communications", "deals", "leads", "contacts", "companies", "reps"):
        conn.execute(f"DELETE FROM {table}")
    n_reps, n_companies, n_contacts, n_leads = 4, rng.randint(0, 5), rng.randint(0, 8), 8

    def ref(n: int) -> int | None:  # an id, sometimes a missing one, sometimes none
        return rng.choice([None, n + 1, *range(1, n + 1)]) if rng.random() < 0.9 else None

    def stamp() -> str:
        return rng.choice(STAMPS)

    for i in range(1, n_reps + 1):
        conn.execute(
            "INSERT INTO reps (id, name, role, active, extension, phone, created_at) "
            "VALUES (?, ?, 'rep', ?, ?, ?, ?)",
            (i, f"Rep {i}", rng.choice([0, 1]), rng.choice([None, f"10{i}"]), None, NOW),
        )
    for i in range(1, n_companies + 1):
        conn.execute(
            "INSERT INTO companies (id, title, responsible_id, created_at, modified_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (i, f"Company {i}", ref(n_reps), NOW, stamp()),
        )
    for i in range(1, n_contacts + 1):
        conn.execute(
            "INSERT INTO contacts (id, name, company_id, responsible_id, created_at, modified_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (i, f"Contact {i}", ref(n_companies), ref(n_reps), NOW, stamp()),
        )

    def open_or_closed() -> tuple[object, ...]:
        """A lead's or deal's semantic, client, responsible and times."""
        semantic = rng.choice(["process", "process", "success", "failure"])
        return semantic, ref(n_contacts), ref(n_companies), ref(n_reps), NOW, stamp()

    for i in range(1, n_leads + 1):
        conn.execute(
            "INSERT INTO leads (id, title, status, status_semantic, source, is_return_customer,"
            " contact_id, company_id, responsible_id, escalation_count, created_at, modified_at)"
            " VALUES (?, ?, 'x', ?, 'web', 0, ?, ?, ?, 0, ?, ?)",
            (i, f"Lead {i}", *open_or_closed()),
        )
    for i in range(1, rng.randint(0, 10) + 1):
        conn.execute(
            "INSERT INTO deals (id, title, pipeline_id, stage_id, stage_semantic, currency,"
            " is_return_customer, is_repeated_approach, origin_repeat, contact_id, company_id,"
            " responsible_id, created_at, modified_at)"
            " VALUES (?, ?, 1, 1, ?, 'EUR', 0, 0, 0, ?, ?, ?, ?, ?)",
            (i, f"Deal {i}", *open_or_closed()),
        )
    owners = {"contact": n_contacts, "company": n_companies, "lead": n_leads}
    for _ in range(rng.randint(0, 25)):
        kind = rng.choice(["contact", "company", "lead"])
        conn.execute(
            "INSERT INTO communications (kind, raw_value, value, owner_type, owner_id,"
            " created_at) VALUES (?, 'raw', ?, ?, ?, ?)",
            (
                rng.choice(["phone"] * 5 + ["email"]),
                rng.choice(NUMBERS[:4]),
                kind,
                rng.randint(1, owners[kind] + 1),
                NOW,
            ),
        )


def test_the_steps_answer_exactly_as_the_statement(conn: sqlite3.Connection) -> None:
    single = caller_sql(sqlite=True)
    warm_sqlite_steps(conn)
    rng = random.Random(18)
    answered = 0
    for _ in range(400):
        conn.execute("BEGIN")
        _fill(conn, rng)
        conn.execute("COMMIT")
        for number in NUMBERS[:5]:
            expected = conn.execute(single, {"e164": number}).fetchone()
            assert sqlite_caller_row(conn, number) == tuple(expected), number
            assert not conn.in_transaction
            answered += expected[0] is not None or expected[2] is not None
    assert answered > 500  # most CRMs had someone on the numbers


def test_more_holders_than_read_answer_alike(conn: sqlite3.Connection) -> None:
    """Only the newest `MAX_HOLDERS` holders of a number count, in both forms."""
    conn.execute(
        "INSERT INTO contacts (id, name, created_at, modified_at) VALUES (1, 'Old', ?, ?)",
        (NOW, STAMPS[4]),
    )
    for i in range(2, MAX_HOLDERS + 3):
        conn.execute(
            "INSERT INTO contacts (id, name, created_at, modified_at) VALUES (?, ?, ?, ?)",
            (i, f"C{i}", NOW, STAMPS[0]),
        )
        conn.execute(
            "INSERT INTO communications (kind, raw_value, value, owner_type, owner_id,"
            " created_at) VALUES ('phone', 'raw', ?, 'contact', ?, ?)",
            (NUMBERS[0], 1 if i == 2 else i, NOW),
        )
    expected = conn.execute(caller_sql(sqlite=True), {"e164": NUMBERS[0]}).fetchone()
    assert expected[1] == f"C{MAX_HOLDERS + 2}"  # the newest changed one is past the limit
    assert sqlite_caller_row(conn, NUMBERS[0]) == tuple(expected)


def test_the_steps_only_probe_indexes(conn: sqlite3.Connection) -> None:
    for name, sql in SQLITE_STEPS.items():
        params: dict[str, object] | tuple[int] = (
            {"e164": NUMBERS[0], "company_id": 1, "contact_id": 1} if ":" in sql else (1,)
        )
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
        program = [row[1] for row in conn.execute("EXPLAIN " + sql, params)]
        assert "OpenEphemeral" not in program and "SorterOpen" not in program, (name, plan)
        assert not [step for step in plan if "TEMP B-TREE" in step], (name, plan)
        for table in ("communications", "contacts", "companies", "leads", "deals", "reps"):
            assert not [step for step in plan if step.startswith(f"SCAN {table}")], (name, plan)
