"""`leadbot db upgrade | db copy`, `leadbot backup`, `leadbot restore`: the database's schema,
moving it to another database, and backups (docs/operations/database.md)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from crm.db import Database
from leadbot.app import journal_dir
from leadbot.cli_common import CliError, ping_or_fail, settings_of
from leadbot.logs import safe_url
from leadbot.settings import Settings


def cmd_db_upgrade(args: argparse.Namespace) -> None:
    from crm.schema import upgrade_blocking

    settings = settings_of(args)
    try:
        upgrade_blocking(settings.database.url, args.revision)
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CliError(f"migration failed on {safe_url(settings.database.url)}: {reason}") from None
    print(f"database at {args.revision}: {safe_url(settings.database.url)}")


async def _db_copy(source_url: str, target_url: str, resume: bool, quiet: bool) -> None:
    from tqdm import tqdm

    from crm.transfer import TransferRefused, copy_database

    source, target = Database(source_url), Database(target_url)
    bars: dict[str, tqdm[Any]] = {}

    def progress(table: str, done: int, total: int) -> None:
        if quiet:
            return
        bar = bars.get(table)
        if bar is None:
            bar = bars[table] = tqdm(total=total, desc=table, unit="rows", leave=True)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    try:
        await ping_or_fail(source, source_url)
        await ping_or_fail(target, target_url)
        counts = await copy_database(source, target, resume=resume, progress=progress)
    except TransferRefused as exc:
        raise CliError(str(exc)) from None
    finally:
        for bar in bars.values():
            bar.close()
        await source.dispose()
        await target.dispose()
    wrong = [c for c in counts if c.source != c.target]
    if wrong:
        raise CliError(
            "copied, but the row counts differ: "
            + ", ".join(f"{c.table} {c.source} → {c.target}" for c in wrong)
        )
    rows = sum(c.source for c in counts)
    print(
        f"copied {rows} rows in {len(counts)} tables from {safe_url(source_url)} "
        f"to {safe_url(target_url)}; row counts match"
    )


def cmd_db_copy(args: argparse.Namespace) -> None:
    source = args.source or settings_of(args).database.url
    if source == args.target:
        raise CliError("--from and --to name the same database")
    asyncio.run(_db_copy(source, args.target, args.resume, args.quiet))


async def _backup(settings: Settings, dest: Path) -> None:
    from crm.backup import BackupError, backup

    db = Database(settings.database.url)
    try:
        await ping_or_fail(db, settings.database.url)
        journal = None if settings.redis.url else journal_dir(settings, db)
        manifest = await backup(db, journal, dest)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    finally:
        await db.dispose()
    size = await asyncio.to_thread(lambda: dest.stat().st_size)
    print(
        f"backup of {safe_url(settings.database.url)} written to {dest} ({size:,} bytes, "
        f"schema {manifest.schema}, {manifest.journal_files} journal file(s))"
    )
    if settings.redis.url:
        print("the queue is in Redis: keep Redis' append-only file too (docs/operations)")


def cmd_backup(args: argparse.Namespace) -> None:
    asyncio.run(_backup(settings_of(args), Path(args.file)))


async def _restore(settings: Settings, src: Path, force: bool) -> None:
    from crm.backup import BackupError, restore

    db = Database(settings.database.url)
    try:
        if not db.is_sqlite:
            await ping_or_fail(db, settings.database.url)
        journal = None if settings.redis.url else journal_dir(settings, db)
        manifest = await restore(db, journal, src, force=force)
    except BackupError as exc:
        raise CliError(str(exc)) from None
    finally:
        await db.dispose()
    print(
        f"restored {src} (schema {manifest.schema}, {manifest.journal_files} journal file(s)) "
        f"into {safe_url(settings.database.url)}; start Leadbot: it replays the journal"
    )


def cmd_restore(args: argparse.Namespace) -> None:
    asyncio.run(_restore(settings_of(args), Path(args.file), args.force))


def register_db_commands(sub: Any) -> None:
    """The sub-commands of this module on the `leadbot` parser."""
    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_cmd", required=True)
    s = db.add_parser("upgrade", help="apply migrations")
    s.add_argument(
        "revision", nargs="?", default="head", help="Alembic revision to reach (default: head)"
    )
    s.set_defaults(fn=cmd_db_upgrade)
    s = db.add_parser(
        "copy",
        help="copy every table into another database (SQLite to PostgreSQL and back)",
        description="Copy every record, event, outbox row, rep, token and setting from one "
        "database to another, e.g. from the embedded SQLite file to PostgreSQL. Stop the "
        "service first. The target is migrated when empty; the row counts are compared.",
    )
    s.add_argument(
        "--from",
        dest="source",
        default=None,
        help="database URL to copy from (default: database.url of the config)",
    )
    s.add_argument(
        "--to", dest="target", required=True, help="database URL to copy to (empty, or --resume)"
    )
    s.add_argument("--resume", action="store_true", help="go on with a copy that was interrupted")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(fn=cmd_db_copy)

    s = sub.add_parser(
        "backup",
        help="write the database and the queue journal to one file, while Leadbot runs",
    )
    s.add_argument("file", help="the backup file to write (a .tar.gz)")
    s.set_defaults(fn=cmd_backup)
    s = sub.add_parser(
        "restore", help="put a backup in place of the database and the journal (stop Leadbot)"
    )
    s.add_argument("file", help="a file `leadbot backup` wrote")
    s.add_argument(
        "--force", action="store_true", help="replace a database or journal that holds data"
    )
    s.set_defaults(fn=cmd_restore)
