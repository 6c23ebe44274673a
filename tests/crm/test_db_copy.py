"""`leadbot db copy`: the embedded SQLite CRM moved to PostgreSQL serves the same answers.

A populated SQLite database (every table, thousands of rows, made through the services) is
copied with the real command into an empty PostgreSQL database; both are then served with the
REST API, and every list and record the API gives must be the same. The copy hands out new
ids after the copied ones, refuses a filled target and resumes an interrupted copy.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select, text

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import Actor
from crm.facade import Crm
from crm.models import Lead
from crm.schema import upgrade
from crm.services.board import BoardFilters
from crm.services.outbox import CardRef
from leadbot.api import api_component
from leadbot.app import Service
from matching.event import Channel
from tests.conftest import (
    leadbot_run,
    make_event,
    service_settings,
    table_counts,
    unanalyzed_tables,
)

PEOPLE = 900  # each calls, some also mail, and some call again: about 3,000 events


async def _populate(url: str) -> str:
    """A CRM with rows in every table, through the services; the API token it made."""
    db = Database(url)
    try:
        await upgrade(db)
        crm = Crm(db, CrmConfig())
        await crm.prepare()
        reps = [
            (await crm.reps.add(name, telegram_user_id=1000 + i)).id
            for i, name in enumerate(("Anna", "Ben", "Cleo"))
        ]
        token_id, token = await crm.tokens.create("copy test")
        # A write API request's idempotency record (its answer kept for retries).
        await crm.idempotency.begin(token_id, "retry-1", "0" * 64)
        await crm.idempotency.finish(token_id, "retry-1", 201, '{"id": 1}')
        await crm.exceptions.add("+49 30 9999999", comment="our own switchboard")
        # The web console: a rep signed in, and a sign-in link not yet used.
        await crm.web_sessions.redeem(await crm.web_sessions.create_link(reps[0]))
        await crm.web_sessions.create_link(reps[1])
        # Why a mail went to the spam folder (the console's quarantine page).
        await crm.mail_state.spam("sales", "<gewinn@lotto.example>", "headers", "X-Spam-Flag: YES")
        start = datetime(2026, 11, 1, 9, tzinfo=UTC)
        events = []
        for i in range(PEOPLE):
            phone = f"+49 30 {2000000 + i}"
            at = start + timedelta(minutes=i)
            events.append(make_event(phones=(phone,), occurred_at=at, display_name=f"Kunde {i}"))
            if i % 3 == 0:
                events.append(
                    make_event(
                        channel=Channel.EMAIL,
                        emails=(f"kunde{i}@example.de",),
                        phones=(phone,),
                        subject=f"Anfrage {i}",
                        text="Bitte um ein Angebot",
                        occurred_at=at + timedelta(hours=1),
                    )
                )
            if i % 4 == 0:
                events.append(make_event(phones=(phone,), occurred_at=at + timedelta(days=1)))
        for k in range(0, len(events), 200):
            await crm.intake.process_many(events[k : k + 200])
        async with db.engine.connect() as conn:
            leads = (await conn.scalars(select(Lead.id).order_by(Lead.id).limit(40))).all()
        for lead_id in leads:
            await crm.leads.convert(lead_id)
        for n in range(12):
            await crm.records.create_company(
                f"Firma {n} GmbH", phones=(f"+49 89 {3000000 + n}",), responsible_id=reps[n % 3]
            )
        try:  # the Bitrix24 telephony endpoint's call registrations
            for n in range(8):
                await crm.telephony.register(
                    f"line-{n}",
                    user_id=reps[0],
                    phone=f"+49 30 {2000000 + n}",
                    call_type=2,
                    request={"PHONE_NUMBER": f"+49 30 {2000000 + n}"},
                    now=start + timedelta(minutes=n),
                )
        finally:
            await crm.close()
        due = await crm.outbox.due(datetime.now(UTC) + timedelta(days=30), limit=5)
        for n, item in enumerate(due):
            await crm.outbox.mark_sent(
                item.id, [CardRef(reps[0], 1000, 500 + n, "lead", 1)], note="shown"
            )
        return token
    finally:
        await db.dispose()


async def _answers(url: str, token: str, tmp_path: Path) -> dict[str, Any]:
    """What the REST API answers about every list and a sample of records."""
    db = Database(url)
    service = Service(
        service_settings(db, queue={"journal_dir": str(tmp_path / f"q-{uuid.uuid4().hex}")}),
        components=[api_component],
    )
    await service.start()
    found: dict[str, Any] = {}
    try:
        base = f"http://127.0.0.1:{service.port}/api/v1"
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            for path in ("leads", "deals", "contacts", "companies", "events"):
                offset, items = 0, []
                while True:
                    params = {"offset": str(offset), "limit": "200"}
                    async with http.get(f"{base}/{path}", params=params) as r:
                        assert r.status == 200, await r.text()
                        page = (await r.json())["items"]
                    items += page
                    if len(page) < 200:
                        break
                    offset += 200
                found[path] = items
            for path in ("leads", "contacts"):
                for item in found[path][:: max(1, len(found[path]) // 25)]:
                    async with http.get(f"{base}/{path}/{item['id']}") as r:
                        found[f"{path}/{item['id']}"] = await r.json()
            async with http.get(f"{base}/duplicates", params={"phone": "030 2000003"}) as r:
                found["duplicates"] = await r.json()
    finally:
        await service.stop()
        await db.dispose()
    return found


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}


async def test_a_sqlite_crm_copied_to_postgres_serves_the_same_answers(
    tmp_path: Path, empty_postgres: str
) -> None:
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'leadbot.db'}"
    token = await _populate(sqlite)
    before = await table_counts(sqlite)
    assert all(before.values()), {t: n for t, n in before.items() if not n}  # every table
    assert sum(before.values()) > 5_000

    code, out, err = await leadbot_run(
        "db", "copy", "--from", sqlite, "--to", empty_postgres, env=_env(), timeout=300
    )
    assert code == 0, err
    assert "row counts match" in out
    assert await table_counts(empty_postgres) == before
    # The copy leaves PostgreSQL statistics to plan with (autovacuum may come much later).
    assert await unanalyzed_tables(empty_postgres) == []
    assert await _answers(empty_postgres, token, tmp_path) == await _answers(
        sqlite, token, tmp_path
    )
    # The target's triggers counted the copied records for the board, as the source's did.
    for url in (sqlite, empty_postgres):
        db = Database(url)
        try:
            board = Crm(db, CrmConfig()).board
            for kind in ("lead", "deal"):
                live = await board.live_totals(kind, BoardFilters(), Actor(None))
                assert (
                    live[0]
                    and await board.counted_totals(kind, BoardFilters(), Actor(None)) == live
                )
        finally:
            await db.dispose()

    # New rows on PostgreSQL get ids after the copied ones.
    db = Database(empty_postgres)
    try:
        crm = Crm(db, CrmConfig())
        result = await crm.intake.process(make_event(phones=("+49 40 5550101",)))
        async with db.engine.connect() as conn:
            newest = await conn.scalar(text("SELECT max(id) FROM leads"))
        assert result.lead_id == newest and newest > before["leads"]
    finally:
        await db.dispose()

    # A filled target is refused; --resume goes on where an interrupted copy stopped.
    code, _, err = await leadbot_run(
        "db", "copy", "--from", sqlite, "--to", empty_postgres, env=_env()
    )
    assert code == 2 and "already has rows" in err and "--resume" in err


async def test_an_interrupted_copy_resumes_to_the_same_rows(
    tmp_path: Path, empty_postgres: str
) -> None:
    sqlite = f"sqlite+aiosqlite:///{tmp_path / 'leadbot.db'}"
    await _populate(sqlite)
    before = await table_counts(sqlite)
    # Interrupted: the target holds the first tables whole and a prefix of one.
    from crm.transfer import copy_database

    stop_at = "activities"

    class Interrupted(Exception):
        pass

    def progress(table: str, done: int, total: int) -> None:
        if table == stop_at and done >= total // 2 and done:
            raise Interrupted

    source, target = Database(sqlite), Database(empty_postgres)
    try:
        with pytest.raises(Interrupted):
            await copy_database(source, target, batch=100, progress=progress)
    finally:
        await source.dispose()
        await target.dispose()
    partial = await table_counts(empty_postgres)
    assert 0 < partial[stop_at] < before[stop_at]

    code, _, err = await leadbot_run(
        "db", "copy", "--from", sqlite, "--to", empty_postgres, "--resume", env=_env(), timeout=300
    )
    assert code == 0, err
    assert await table_counts(empty_postgres) == before
