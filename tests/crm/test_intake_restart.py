"""Intake across a restart of a PostgreSQL of the test's own: the batch's connection is
checked on checkout, but its round-robin pick goes on a pool without pre-ping
(`Database.autocommit`), so the first batch after the restart meets a dead connection there;
it fails as an outage (the queue retries it), writes nothing, and the retry goes through on a
fresh connection."""

from __future__ import annotations

from sqlalchemy import func, select, text

from crm.config import CrmConfig
from crm.db import Database
from crm.dto import IntakeResult
from crm.facade import Crm
from crm.models import InboundEventLog, Lead
from crm.outage import is_outage
from crm.schema import upgrade_blocking
from tests.conftest import _in_thread, make_event
from tests.servers import PostgresServer


async def test_a_new_lead_after_a_postgres_restart_fails_as_an_outage_then_goes_through(
    own_postgres: PostgresServer,
) -> None:
    _in_thread(lambda: upgrade_blocking(own_postgres.url()))
    db = Database(own_postgres.url(), pool_size=2)
    try:
        crm = Crm(db, CrmConfig())
        await crm.prepare()
        rita = await crm.reps.add("Rita")
        first = await crm.intake.process(make_event(phones=("+49 30 5550101",)))
        assert first.outcome == "new_lead" and first.responsible_id == rita.id

        await own_postgres.stop()
        await own_postgres.start()

        event = make_event(phones=("+49 30 5550102",))
        failed = (await crm.intake.process_many([event]))[0]
        # The checkout's ping replaced the batch's dead connection; the pick met one.
        assert isinstance(failed, Exception) and is_outage(failed), failed
        done = (await crm.intake.process_many([event]))[0]  # the queue's retry
        assert isinstance(done, IntakeResult)
        assert done.outcome == "new_lead" and done.responsible_id == rita.id
        async with db.read() as s:
            assert await s.scalar(select(func.count()).select_from(Lead)) == 2
            logged = select(func.count()).where(InboundEventLog.external_id == event.external_id)
            assert await s.scalar(logged) == 1
    finally:
        await db.dispose()


async def test_the_checkout_ping_keeps_a_live_connection_and_replaces_a_dead_one(
    own_postgres: PostgresServer,
) -> None:
    db = Database(own_postgres.url(), pool_size=1)
    backend = text("SELECT pg_backend_pid()")
    try:
        async with db.transaction() as s:
            first = await s.scalar(backend)
        async with db.transaction() as s:
            assert await s.scalar(backend) == first  # pinged, kept
        await own_postgres.stop()
        await own_postgres.start()
        async with db.transaction() as s:
            assert await s.scalar(backend) != first  # the dead one replaced on checkout
    finally:
        await db.dispose()
