"""Servers of a test's own, for tests that kill, stop or restart them: a redis-server and a
PostgreSQL cluster, each on a free loopback port with its data in a directory of its own.

What it guarantees:
- never the shared servers (Redis 6379, PostgreSQL 5432): a fresh port and data dir each;
- a server comes back on the same port with the same data after `kill()` or `stop()` and
  `start()`;
- the fixtures `own_redis` and `own_postgres` end every process they started and remove the
  PostgreSQL files, also when the test fails;
- a missing server binary skips the test instead of failing it.

Registered as a plugin in tests/conftest.py, so the fixtures are there in every test module.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

HOST = "127.0.0.1"


def free_port() -> int:
    """A loopback port nobody listens on (right now)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float = 30, what: str = "the condition"
) -> None:
    """Poll `check` every 50 ms until it is true; an AssertionError after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def end_process(proc: asyncio.subprocess.Process, timeout: float = 30) -> None:
    """SIGTERM (a clean shutdown), SIGKILL if it has not exited after `timeout` s; reaped."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.send_signal(signal.SIGKILL)
    await asyncio.wait_for(proc.wait(), timeout)


# --- Redis --------------------------------------------------------------------------------


class RedisServer:
    """redis-server on a free port with its files (and redis.log) in `directory`.
    appendonly: an append-only file fsync'd on every write, so what Redis acknowledged survives
    kill -9; without it no persistence at all (a restart comes back empty)."""

    def __init__(self, directory: Path, *, appendonly: bool = True) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed (Debian package redis-server)")
        self.exe = exe
        self.directory = directory
        self.appendonly = appendonly
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    async def start(self, timeout: float = 20) -> None:
        """Start it and return once it answers PING with its data set loaded."""
        assert self.proc is None or self.proc.returncode is not None, "already running"
        self.directory.mkdir(parents=True, exist_ok=True)
        options = {
            "bind": HOST,
            "port": str(self.port),
            "dir": str(self.directory),
            "appendonly": "yes" if self.appendonly else "no",
            "appendfsync": "always",  # every write on disk before Redis answers it
            "save": "",
            "logfile": str(self.directory / "redis.log"),
        }
        args = [part for key, value in options.items() for part in (f"--{key}", value)]
        self.proc = await asyncio.create_subprocess_exec(
            self.exe, *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await wait_until(self.ping, timeout, f"redis-server on port {self.port}")

    async def ping(self) -> bool:
        """PONG, and the data set is loaded (a LOADING reply is no PONG)."""
        try:
            reader, writer = await asyncio.open_connection(HOST, self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return (await asyncio.wait_for(reader.readline(), 1)).startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def kill(self) -> None:
        """SIGKILL, as a crash: what the AOF holds is what survives."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 20)

    async def stop(self) -> None:
        """SIGTERM: a clean shutdown (the AOF is flushed, when there is one)."""
        if self.proc is not None:
            await end_process(self.proc, 20)


OwnRedis = Callable[..., Awaitable[RedisServer]]


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[OwnRedis]:
    """`await own_redis(appendonly=..., start=...)`: a redis-server of the test's own (started
    unless start=False); every one is killed after the test, whatever its outcome."""
    made: list[RedisServer] = []

    async def make(*, appendonly: bool = True, start: bool = True) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(made)}", appendonly=appendonly)
        made.append(server)
        if start:
            await server.start()
        return server

    try:
        yield make
    finally:
        for server in made:
            await server.kill()


# --- PostgreSQL ---------------------------------------------------------------------------


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian keeps them apart by version)."""
    versions = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    versions = [v for v in versions if v.parent.name.isdigit()]
    if versions:
        return max(versions, key=lambda v: int(v.parent.name))
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).resolve().parent


class PostgresServer:
    """A throw-away PostgreSQL cluster: `init()` runs initdb into a temporary directory (not
    pytest's tmp_path: the `postgres` OS user must be able to enter it), trust auth, loopback
    only, fsync off (what it committed survives `kill()`, not an OS crash). PostgreSQL
    refuses to run as root, so as root every tool runs as the `postgres` OS user (runuser).
    `close()` removes it all."""

    def __init__(self) -> None:
        bin_dir = pg_bin()
        if bin_dir is None:
            pytest.skip("the PostgreSQL server binaries (initdb) are not installed")
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="leadbot-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@{HOST}:{self.port}/{database}"

    async def _run(self, tool: str, *args: str, timeout: float = 90) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._as,
            str(self.bin / tool),
            *args,
            cwd=self.root,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            text = out.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{tool} failed ({proc.returncode}):\n{text}")

    async def init(self) -> None:
        await self._run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\n"
                f"listen_addresses = '{HOST}'\n"
                f"unix_socket_directories = '{self.root}'\n"
                # No fsync (only an OS crash would lose data), but every commit is in the WAL
                # before it is acknowledged: a commit survives kill() as it does a real crash.
                "fsync = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )

    async def start(self) -> None:
        """Start it and return once it accepts connections."""
        await self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"
        )

    async def stop(self) -> None:
        """A fast shutdown: clients are cut off, as in a restart for maintenance."""
        await self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    async def kill(self) -> None:
        """An immediate shutdown (no checkpoint), as a crash would be."""
        await self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    async def create_database(self, name: str) -> None:
        await self._run("createdb", "-h", HOST, "-p", str(self.port), "-U", "postgres", name)

    async def close(self) -> None:
        try:
            if self.running():
                await self.kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@contextlib.asynccontextmanager
async def postgres_server() -> AsyncIterator[PostgresServer]:
    """A started PostgresServer, closed on the way out whatever happened."""
    server = PostgresServer()
    try:
        await server.init()
        await server.start()
        yield server
    finally:
        await server.close()


@pytest.fixture
async def own_postgres() -> AsyncIterator[PostgresServer]:
    """A started PostgreSQL of the test's own (database `postgres`), removed after the test."""
    async with postgres_server() as server:
        yield server
