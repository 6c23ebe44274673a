"""`leadbot dead list | retry ID | drop ID`: the queue's dead letters (`crm.deadletters`).

With Redis they are in `<stream>:dead`; without, in `dead/` under the queue journal. `retry`
puts an item back into the live queue: on Redis at once; on the journal through `retry/`,
which a running service takes within a few seconds (it holds the journal's lock) and a stopped
one at its next start.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from crm.db import Database
from crm.deadletters import DeadLetter, JournalDeadLetters, RedisDeadLetters, UnknownDeadLetter
from crm.queue import describe
from leadbot.app import journal_dir
from leadbot.cli_common import CliError, settings_of
from leadbot.settings import Settings


def register_cli(subparsers: Any) -> None:
    """Add `dead` to the `leadbot` command line."""
    p = subparsers.add_parser(
        "dead",
        help="queued events given up on (dead letters): list, retry, drop",
        description="Events intake failed on queue.max_failures times (never for an outage) "
        "and queue entries no worker could read.",
    )
    sub = p.add_subparsers(dest="dead_cmd", required=True)
    s = sub.add_parser("list", help="list the dead letters")
    s.set_defaults(fn=cmd_dead)
    s = sub.add_parser("retry", help="put one back into the live queue")
    s.add_argument("id", help="the dead letter's id (leadbot dead list)")
    s.set_defaults(fn=cmd_dead)
    s = sub.add_parser("drop", help="delete one for good")
    s.add_argument("id", help="the dead letter's id (leadbot dead list)")
    s.set_defaults(fn=cmd_dead)


class _Refused(Exception):
    pass


def cmd_dead(args: argparse.Namespace) -> None:
    settings = settings_of(args)
    try:
        asyncio.run(_run(settings, args))
    except (UnknownDeadLetter, _Refused) as exc:
        raise CliError(str(exc)) from None


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    if settings.redis.url:
        redis = Redis.from_url(settings.redis.url)
        try:
            store = RedisDeadLetters(redis, settings.redis.stream)
            if args.dead_cmd == "list":
                _print(await store.letters(), f"stream {store.key}")
            elif args.dead_cmd == "retry":
                await store.retry(args.id)
                print(f"{args.id} is back in stream {settings.redis.stream}")
            else:
                await store.drop(args.id)
                print(f"{args.id} dropped")
        finally:
            await redis.aclose()
        return
    db = Database(settings.database.url)
    directory = journal_dir(settings, db)
    await db.dispose()
    if directory is None:
        raise _Refused("no dead letters: the queue has neither Redis nor a journal")
    journal = JournalDeadLetters(directory)
    if args.dead_cmd == "list":
        _print(await asyncio.to_thread(journal.letters), str(journal.dead))
    elif args.dead_cmd == "retry":
        await asyncio.to_thread(journal.retry, args.id)
        print(
            f"{args.id} goes back to the queue: a running service takes it within a few "
            "seconds, a stopped one at its next start"
        )
    else:
        await asyncio.to_thread(journal.drop, args.id)
        print(f"{args.id} dropped")


def _print(letters: list[DeadLetter], where: str) -> None:
    if not letters:
        print(f"no dead letters ({where})")
        return
    print("id\tgiven up at\tfailures\titem\treason")
    for d in letters:
        item = d.item
        at = datetime.fromtimestamp(d.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        what = describe(item) if item is not None else "(unreadable)"
        print(f"{d.id}\t{at}\t{d.failures}\t{what}\t{d.reason}")
