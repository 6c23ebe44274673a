"""`leadbot backup FILE` / `leadbot restore FILE`: one file holding the database and the
in-process queue's journal, taken while the service runs.

Taken in this order, so that nothing acknowledged before the backup started is missing from
it: first the journal (events a channel acknowledged that intake had not committed yet), then
the database (SQLite's online backup API: a consistent copy with what the WAL holds; on
PostgreSQL `pg_dump` in its custom format). An event committed between the two is in both; a
restored service replays the journal and intake takes each event once, so it counts once.

The file is a tar archive: `manifest.json`, `database.sqlite` or `database.pgdump`, and
`journal/` (segments, dead letters, items put back). A Redis queue is not in it: Redis keeps
its own (the append-only file).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from crm.db import Database
from crm.errors import CrmError
from crm.schema import current_revision, is_empty

FORMAT = 1
_JOURNAL = "journal"


class BackupError(CrmError):
    """A backup or restore that cannot be done: says why and what to do."""


@dataclass(frozen=True, slots=True)
class Manifest:
    format: int
    created: float
    database: str  # "sqlite" | "postgresql"
    schema: str | None
    journal_files: int

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format": self.format,
                "created": self.created,
                "database": self.database,
                "schema": self.schema,
                "journal_files": self.journal_files,
            }
        ).encode()


def _kind(db: Database) -> str:
    return "sqlite" if db.is_sqlite else "postgresql"


def _journal_files(journal: Path | None) -> list[Path]:
    """What of the journal a restore needs: segments, dead letters, items put back."""
    if journal is None or not journal.is_dir():
        return []
    found = sorted(journal.glob("segment-*.jsonl"))
    for sub in ("dead", "retry"):
        if (journal / sub).is_dir():
            found += sorted(p for p in (journal / sub).iterdir() if p.is_file())
    return found


def _copy_journal(journal: Path | None, into: Path) -> int:
    copied = 0
    for path in _journal_files(journal):
        assert journal is not None
        target = into / _JOURNAL / path.relative_to(journal)
        target.parent.mkdir(parents=True, exist_ok=True)
        # A segment retired meanwhile held only settled items: they are in the database.
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(path, target)
            copied += 1
    return copied


def _sqlite_backup(source: str, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _pg_args(url: URL) -> tuple[list[str], dict[str, str]]:
    """libpq arguments and environment: the password goes in PGPASSWORD, never in argv."""
    args = []
    if url.host:
        args += ["--host", url.host]
    if url.port:
        args += ["--port", str(url.port)]
    if url.username:
        args += ["--username", url.username]
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    return args, env


async def _run(program: str, *args: str, env: dict[str, str]) -> None:
    path = shutil.which(program)
    if path is None:
        raise BackupError(
            f"{program} not found: install the PostgreSQL client tools "
            "(Debian: postgresql-client, the server's major version or newer)"
        )
    proc = await asyncio.create_subprocess_exec(
        path, *args, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        raise BackupError(f"{program} failed: {lines[-1] if lines else proc.returncode}")


async def backup(db: Database, journal: Path | None, dest: Path) -> Manifest:
    """Write the backup of `db` and `journal` to `dest` (replaced only when complete)."""
    with tempfile.TemporaryDirectory(prefix="leadbot-backup-") as tmp:
        work = Path(tmp)
        journal_files = await asyncio.to_thread(_copy_journal, journal, work)
        schema = await current_revision(db)
        if db.is_sqlite:
            if db.sqlite_file is None:
                raise BackupError("an in-memory database cannot be backed up")
            await asyncio.to_thread(_sqlite_backup, db.sqlite_file, work / "database.sqlite")
        else:
            args, env = _pg_args(db.url)
            await _run(
                "pg_dump",
                *args,
                "--format=custom",
                "--no-owner",
                f"--file={work / 'database.pgdump'}",
                str(db.url.database),
                env=env,
            )
        manifest = Manifest(FORMAT, time.time(), _kind(db), schema, journal_files)
        (work / "manifest.json").write_bytes(manifest.to_json())
        await asyncio.to_thread(_write_archive, work, dest)
    return manifest


def _write_archive(work: Path, dest: Path) -> None:
    partial = dest.with_name(dest.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for path in sorted(work.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(work)), recursive=False)
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    partial.replace(dest)


def read_manifest(src: Path) -> Manifest:
    try:
        with tarfile.open(src, "r:*") as tar:
            member = tar.extractfile("manifest.json")
            if member is None:
                raise KeyError("manifest.json")
            data: dict[str, Any] = json.loads(member.read())
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise BackupError(f"{src} is not a Leadbot backup ({exc})") from None
    if data.get("format") != FORMAT:
        raise BackupError(f"{src}: backup format {data.get('format')} is not known here")
    return Manifest(
        FORMAT,
        float(data["created"]),
        str(data["database"]),
        data.get("schema"),
        int(data.get("journal_files", 0)),
    )


def _journal_in_use(journal: Path) -> bool:
    """A running Leadbot holds an flock on its journal's lock file."""
    lock = journal / "lock"
    if not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


async def restore(
    db: Database, journal: Path | None, src: Path, *, force: bool = False
) -> Manifest:
    """Put the backup `src` in place of `db` and `journal`. Leadbot must be stopped; a
    database (or journal) that holds data is replaced only with `force`."""
    manifest = read_manifest(src)
    if manifest.database != _kind(db):
        raise BackupError(
            f"this is a backup of a {manifest.database} database and database.url names a "
            f"{_kind(db)} one: restore it into {manifest.database}, then `leadbot db copy`"
        )
    if journal is not None and await asyncio.to_thread(_journal_in_use, journal):
        raise BackupError(f"Leadbot is running (it holds {journal}): stop it first")
    if not force:
        if not await is_empty(db):
            raise BackupError("the database already holds data: give --force to replace it")
        if await asyncio.to_thread(_journal_files, journal):
            raise BackupError(f"the journal {journal} holds items: give --force to replace it")
    with tempfile.TemporaryDirectory(prefix="leadbot-restore-") as tmp:
        work = Path(tmp)
        await asyncio.to_thread(_extract, src, work)
        if db.is_sqlite:
            if db.sqlite_file is None:
                raise BackupError("cannot restore into an in-memory database")
            await db.dispose()  # no connection of ours keeps the old file open
            await asyncio.to_thread(_put_sqlite, work / "database.sqlite", Path(db.sqlite_file))
        else:
            args, env = _pg_args(db.url)
            await _run(
                "pg_restore",
                *args,
                "--clean",
                "--if-exists",
                "--no-owner",
                "--single-transaction",
                f"--dbname={db.url.database}",
                str(work / "database.pgdump"),
                env=env,
            )
            await db.analyze()  # a dump carries no statistics
        if journal is not None:
            await asyncio.to_thread(_put_journal, work / _JOURNAL, journal)
    return manifest


def _extract(src: Path, work: Path) -> None:
    with tarfile.open(src, "r:*") as tar:
        tar.extractall(work, filter="data")


def _put_sqlite(backup_file: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".restoring")
    shutil.copyfile(backup_file, partial)
    for stale in (Path(f"{target}-wal"), Path(f"{target}-shm")):
        stale.unlink(missing_ok=True)  # of the replaced file: they would corrupt the new one
    partial.replace(target)


def _put_journal(restored: Path, journal: Path) -> None:
    journal.mkdir(parents=True, exist_ok=True)
    for old in _journal_files(journal):
        old.unlink()
    if not restored.is_dir():
        return
    for path in sorted(restored.rglob("*")):
        if path.is_file():
            target = journal / path.relative_to(restored)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "rb") as fh, open(target, "wb") as out:
                shutil.copyfileobj(fh, out)
                out.flush()
                os.fsync(out.fileno())
