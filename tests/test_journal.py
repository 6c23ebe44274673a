"""The in-process queue's journal: what `put` acknowledged survives the process, in order,
and the journal cleans up after itself."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

import crm.journal
from channels.phone.signatures import sign_generic
from crm.deadletters import JournalDeadLetters
from crm.journal import JournaledQueue, JournalInUse
from crm.queue import (
    DONE,
    Backlog,
    InProcessQueue,
    LocalQueue,
    Outcome,
    QueueItem,
    RawInput,
    RetryPolicy,
    outcome_of,
)
from crm.services.listing import ListFilter
from leadbot.app import Service
from matching.event import Channel, InboundEvent
from tests.conftest import leadbot_process, leadbot_run, make_event, serve_process


def _segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("segment-*.jsonl"))


FAILED = Outcome("failed", "ValueError: always fails")


def _name(item: QueueItem) -> str:
    return item.external_id if isinstance(item, InboundEvent) else str(item.doc["id"])


class Recorder:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.seen: list[str] = []
        self.fail = fail or set()

    async def __call__(self, items: list[QueueItem]) -> list[Outcome]:
        self.seen += [_name(x) for x in items]
        return [FAILED if _name(x) in self.fail else DONE for x in items]


async def _drain(queue: JournaledQueue, handler: Recorder) -> None:
    stop = asyncio.Event()
    stop.set()  # what is queued, then return
    await queue.run(handler, stop)


async def _restart(directory: Path) -> list[str]:
    """Open the journal again, process everything in it, stop: what was handed over."""
    queue = JournaledQueue(directory)
    await queue.open()
    handler = Recorder()
    await _drain(queue, handler)
    await queue.close()
    return handler.seen


@pytest.mark.parametrize("sync", [True, False])
async def test_what_was_put_and_not_processed_comes_back_in_order(
    tmp_path: Path, sync: bool
) -> None:
    first = JournaledQueue(tmp_path, sync=sync)
    await first.open()
    items: list[QueueItem] = [
        make_event(external_id="a"),
        RawInput("call.generic", 1.5, {"id": "b", "from": "+4930123456"}),
        make_event(external_id="c"),
    ]
    await asyncio.gather(*(first.put(x) for x in items))
    await first.close()  # as a crash would leave it: nothing processed
    assert _segments(tmp_path) != []

    assert await _restart(tmp_path) == ["a", "b", "c"]
    assert _segments(tmp_path) == []  # all done: nothing left to replay


async def test_a_start_says_how_many_items_an_earlier_run_left_and_is_silent_for_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # What a start that failed before taking anything (its port in use) leaves behind.
    (tmp_path / "segment-000000001.jsonl").touch()
    with caplog.at_level("WARNING", logger="crm.journal"):
        assert await _restart(tmp_path) == []
    assert "earlier run" not in caplog.text

    busy = JournaledQueue(tmp_path)
    await busy.open()
    await busy.put(make_event(external_id="left"))
    await busy.close()
    with caplog.at_level("WARNING", logger="crm.journal"):
        assert await _restart(tmp_path) == ["left"]
    assert "queue journal: 1 item(s) from an earlier run queued again" in caplog.text


async def test_a_failed_item_is_kept_for_the_next_start(tmp_path: Path) -> None:
    queue = JournaledQueue(tmp_path)
    await queue.open()
    for name in ("ok-1", "bad", "ok-2"):
        await queue.put(make_event(external_id=name))
    await _drain(queue, Recorder(fail={"bad"}))
    await queue.close()
    # The segment comes back whole; intake answers the two it committed as duplicates.
    assert await _restart(tmp_path) == ["ok-1", "bad", "ok-2"]
    assert _segments(tmp_path) == []


async def test_one_process_owns_a_journal(tmp_path: Path) -> None:
    owner = JournaledQueue(tmp_path)
    await owner.open()
    with pytest.raises(JournalInUse):
        await JournaledQueue(tmp_path).open()
    await owner.close()
    later = JournaledQueue(tmp_path)
    await later.open()  # free again once the owner closed
    await later.close()


async def test_a_half_written_last_line_is_skipped(tmp_path: Path) -> None:
    queue = JournaledQueue(tmp_path)
    await queue.open()
    await queue.put(make_event(external_id="whole"))
    await queue.close()
    [segment] = _segments(tmp_path)
    with (tmp_path / segment).open("ab") as fh:
        fh.write(b'{"event": {"channel": "ca')  # the crash came mid-write
    assert await _restart(tmp_path) == ["whole"]


async def test_finished_segments_are_deleted_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crm.journal, "SEGMENT_MAX", 2_000)
    monkeypatch.setattr(crm.journal, "SEGMENT_RECYCLE", 1_000)
    queue = JournaledQueue(tmp_path)
    await queue.open()
    handler = Recorder()
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(handler, stop))
    for k in range(60):  # a few hundred bytes each: many segments' worth
        await queue.put(make_event(external_id=f"e{k}", text="x" * 200))
    await queue.join()
    assert handler.seen == [f"e{k}" for k in range(60)]
    # Only the segment being written remains; the full, finished ones are gone.
    assert len(_segments(tmp_path)) == 1
    stop.set()
    await runner
    await queue.close()
    assert _segments(tmp_path) == []


SECRET = "journal-test-secret"


async def test_events_acknowledged_before_a_kill_are_processed_after_the_restart(
    tmp_path: Path,
) -> None:
    db_file = tmp_path / "leadbot.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
    env.update(
        LEADBOT_DATABASE__URL=f"sqlite+aiosqlite:///{db_file}",
        LEADBOT_HTTP__PORT="0",
        LEADBOT_PHONE__WEBHOOK_SECRET=SECRET,
        LEADBOT_PHONE__REGION="DE",
    )
    migrate = await leadbot_process("db", "upgrade", env=env)
    assert await asyncio.wait_for(migrate.wait(), 60) == 0
    proc, port = await serve_process(env)
    # Someone holds the database's write lock: intake cannot commit, the webhook still
    # answers (the journal has the events).
    blocker = sqlite3.connect(db_file, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        async with aiohttp.ClientSession() as http:
            for k in range(3):
                body = json.dumps(
                    {
                        "event": "call.missed",
                        "call_id": f"kill-{k}",
                        "direction": "incoming",
                        "from": f"+49 30 9000{k:03d}",
                        "to": "+4989111222",
                    }
                ).encode()
                headers = {"X-Leadbot-Signature": sign_generic(SECRET, int(time.time()), body)}
                async with http.post(
                    f"http://127.0.0.1:{port}/hooks/calls", data=body, headers=headers
                ) as r:
                    assert r.status == 202, await r.text()
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert sqlite3.connect(db_file).execute("SELECT count(*) FROM leads").fetchone() == (0,)
    proc, _ = await serve_process(env)
    try:
        titles: list[str] = []
        for _ in range(200):
            rows = sqlite3.connect(db_file).execute("SELECT title FROM leads ORDER BY title")
            titles = [t for (t,) in rows]
            if len(titles) == 3:
                break
            await asyncio.sleep(0.05)
        assert titles == [f"+4930900000{k} — incoming call" for k in range(3)]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    # Everything done and the service stopped cleanly: the journal is empty.
    assert _segments(Path(f"{db_file}.queue")) == []


FAST = RetryPolicy(max_failures=3, first_delay=0.05, max_delay=0.2)


async def _run_until(queue: LocalQueue, handler: Recorder, done: Callable[[], bool]) -> None:
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(handler, stop))
    try:
        for _ in range(400):
            if done():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("not within 20 s")
    finally:
        stop.set()
        await runner


async def test_an_item_that_always_fails_goes_to_dead_and_holds_up_nothing(
    tmp_path: Path,
) -> None:
    queue = JournaledQueue(tmp_path, policy=FAST)
    await queue.open()
    for name in ("ok-1", "bad", "ok-2"):
        await queue.put(make_event(external_id=name))
    handler = Recorder(fail={"bad"})
    await _run_until(queue, handler, lambda: queue.dead_waiting == 1)
    assert handler.seen.count("bad") == FAST.max_failures
    # ok-2 went with the first batch; later tries of "bad" come alone.
    assert handler.seen[:3] == ["ok-1", "bad", "ok-2"]
    assert handler.seen[3:] == ["bad"] * (FAST.max_failures - 1)
    assert await queue.backlog() == Backlog(0, None)
    await queue.close()
    # Nothing comes back at the next start: the poison is in dead/, with why.
    assert _segments(tmp_path) == []
    assert await _restart(tmp_path) == []
    [letter] = JournalDeadLetters(tmp_path).letters()
    assert letter.item == make_event(external_id="bad", occurred_at=letter.item.occurred_at)  # type: ignore[union-attr]
    assert (letter.failures, letter.reason) == (FAST.max_failures, "ValueError: always fails")


async def test_an_outage_is_waited_out_and_never_given_up(tmp_path: Path) -> None:
    tries: list[str] = []
    up = asyncio.Event()

    async def flaky(items: list[QueueItem]) -> list[Outcome]:
        tries.extend(_name(x) for x in items)
        if not up.is_set():
            return [outcome_of(ConnectionRefusedError(111, "Connect call failed"))] * len(items)
        return [DONE] * len(items)

    queue = JournaledQueue(tmp_path, policy=FAST)
    await queue.open()
    for name in ("a", "b"):
        await queue.put(make_event(external_id=name))
    stop = asyncio.Event()
    runner = asyncio.create_task(queue.run(flaky, stop))
    for _ in range(400):
        if tries.count("a") > 2 * FAST.max_failures:
            break
        await asyncio.sleep(0.05)
    assert (await queue.backlog()).items == 2  # still waiting, not given up
    up.set()
    await asyncio.wait_for(queue.join(), 20)
    stop.set()
    await runner
    assert queue.dead_waiting == 0 and queue.dead_total == 0
    await queue.close()
    assert _segments(tmp_path) == []


async def test_the_oldest_item_s_age_survives_a_restart(tmp_path: Path) -> None:
    queue = JournaledQueue(tmp_path)
    await queue.open()
    await queue.put(make_event(external_id="old"))
    await asyncio.sleep(0.5)
    await queue.put(make_event(external_id="young"))
    first = await queue.backlog()
    assert first.items == 2 and first.oldest_age is not None and first.oldest_age >= 0.5
    await queue.close()
    again = JournaledQueue(tmp_path)
    await again.open()
    second = await again.backlog()
    assert second.items == 2 and second.oldest_age is not None
    assert second.oldest_age >= first.oldest_age
    await _drain(again, Recorder())
    await again.close()


async def test_the_in_process_queue_gives_up_on_a_poison_item_too() -> None:
    given_up: list[int] = []
    queue = InProcessQueue(policy=FAST, on_dead=given_up.append)
    for name in ("x", "bad", "y"):
        await queue.put(make_event(external_id=name))
    handler = Recorder(fail={"bad"})
    await _run_until(queue, handler, lambda: bool(given_up))
    assert given_up == [1]
    assert sorted(set(handler.seen)) == ["bad", "x", "y"]
    assert await queue.depth() == 0


async def test_leadbot_dead_lists_retries_and_drops_with_the_service_running(
    tmp_path: Path, start_service: Callable[..., Awaitable[Service]]
) -> None:
    journal = tmp_path / "journal"
    service = await start_service(
        queue={"journal_dir": str(journal), "max_failures": 2, "retry_delay": 0.05}
    )
    # Input of a kind no channel converts: it fails every time and is given up.
    for n in ("1", "2"):
        await service.submit_raw(
            Channel.CALL, RawInput("test.kind", 1.0, {"id": n, "phone": f"+49 30 777000{n}"})
        )
    letters = JournalDeadLetters(journal)
    metrics = ""
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            async with http.get(f"http://127.0.0.1:{service.port}/metrics") as r:
                metrics = await r.text()
            if "leadbot_dead_letters_total 2.0" in metrics:
                break
            await asyncio.sleep(0.05)
    assert "leadbot_dead_letters_total 2.0" in metrics
    assert "leadbot_dead_letters_waiting 2.0" in metrics
    ids = [d.id for d in letters.letters()]
    assert len(ids) == 2

    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
    env.update(
        LEADBOT_DATABASE__URL=service.settings.database.url, LEADBOT_QUEUE__JOURNAL_DIR=str(journal)
    )

    async def dead(*args: str) -> tuple[int, str, str]:
        return await leadbot_run("dead", *args, env=env)

    code, out, _ = await dead("list")
    assert code == 0
    assert [line.split("\t")[0] for line in out.splitlines()[1:]] == ids
    assert "no converter for 'test.kind' input" in out
    # The channel is there now: the first one put back is processed by the running service.
    service.converters["test.kind"] = lambda raw: make_event(
        external_id=f"k-{raw.doc['id']}", phones=(raw.doc["phone"],)
    )
    code, out, _ = await dead("retry", ids[0])
    assert code == 0 and "within a few seconds" in out
    for _ in range(400):
        leads = (await service.crm.leads.page(ListFilter()))[0]
        if leads:
            break
        await asyncio.sleep(0.05)
    assert len(leads) == 1 and "7770001" in leads[0].title
    code, out, _ = await dead("drop", ids[1])
    assert code == 0
    assert letters.letters() == []
    code, _, err = await dead("drop", ids[1])
    assert code == 2 and f"no dead letter {ids[1]}" in err
    code, _, err = await dead("retry", "../../etc/passwd")
    assert code == 2 and "not a dead-letter id" in err
