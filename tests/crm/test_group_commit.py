"""GroupCommit: puts made together share a write; each put returns when its write did or
raises what it raised; a cancelled put neither stops the write nor its neighbours."""

from __future__ import annotations

import asyncio

import pytest

from crm.queue import GroupCommit


class Writes:
    def __init__(self, fail: set[int] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail or set()
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, items: list[int]) -> None:
        self.batches.append(items)
        await self.gate.wait()
        await asyncio.sleep(0)
        if self.fail & set(items):
            raise OSError(f"cannot write {sorted(self.fail & set(items))}")


async def test_puts_made_together_share_one_write_and_later_ones_the_next() -> None:
    writes = Writes()
    commit = GroupCommit(writes)
    await commit.put(0)  # alone: a write of its own, after one turn of the loop
    writes.gate.clear()
    first = [asyncio.ensure_future(commit.put(i)) for i in range(1, 4)]
    await asyncio.sleep(0.01)  # their write is under way, held at the gate
    later = [asyncio.ensure_future(commit.put(i)) for i in range(4, 6)]
    await asyncio.sleep(0.01)
    writes.gate.set()
    await asyncio.gather(*first, *later)
    assert writes.batches == [[0], [1, 2, 3], [4, 5]]


async def test_a_failed_write_fails_its_puts_only() -> None:
    writes = Writes(fail={2})
    commit = GroupCommit(writes)
    writes.gate.clear()
    first = [asyncio.ensure_future(commit.put(i)) for i in range(1, 3)]
    await asyncio.sleep(0.01)
    later = asyncio.ensure_future(commit.put(3))
    writes.gate.set()
    results = await asyncio.gather(*first, later, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["OSError", "OSError", "NoneType"]
    await commit.put(4)  # the line is free again


async def test_a_cancelled_put_is_written_and_its_neighbours_answered() -> None:
    writes = Writes()
    commit = GroupCommit(writes)
    writes.gate.clear()
    puts = [asyncio.ensure_future(commit.put(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    puts[1].cancel()
    writes.gate.set()
    await puts[0]
    await puts[2]
    with pytest.raises(asyncio.CancelledError):
        await puts[1]
    assert writes.batches == [[0, 1, 2]]
    await commit.drain()


async def test_puts_are_cancelled_with_their_writer_not_left_waiting() -> None:
    writes = Writes()
    commit = GroupCommit(writes)
    writes.gate.clear()
    puts = [asyncio.ensure_future(commit.put(i)) for i in range(2)]
    await asyncio.sleep(0.01)
    waiting = asyncio.ensure_future(commit.put(2))  # for the next write
    await asyncio.sleep(0)
    writer = commit._next
    assert writer is not None
    writer.cancel()
    results = await asyncio.wait_for(
        asyncio.gather(*puts, waiting, return_exceptions=True), timeout=5
    )
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    writes.gate.set()
    await commit.put(3)  # a new writer for the next put
    assert writes.batches[-1] == [3]
