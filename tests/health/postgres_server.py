"""A PostgreSQL of the test's own (initdb into a temp dir, run as the `postgres` user) on a
free loopback port, for tests that kill it. The shared server is never stopped by a test."""

from __future__ import annotations

import asyncio
import glob
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import asyncpg
import pytest

from tests.health.redis_server import free_port

_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


class PostgresServer:
    def __init__(self) -> None:
        if not _BIN:
            pytest.skip("the PostgreSQL server binaries are not installed")
        self.bin = Path(_BIN[-1])
        self.port = free_port()
        # Not under pytest's tmp_path: the postgres user must be able to enter it.
        self.root = Path(tempfile.mkdtemp(prefix="leadbot-pg-"))
        self.data = self.root / "data"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    async def init(self) -> None:
        shutil.chown(self.root, "postgres")
        await asyncio.to_thread(
            subprocess.run,
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
            user="postgres",  # initdb refuses to run as root
            cwd=self.root,
            check=True,
            capture_output=True,
        )

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            user="postgres",
            cwd=self.root,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for _ in range(300):
            try:
                conn = await asyncpg.connect(
                    host="127.0.0.1", port=self.port, user="postgres", database="postgres"
                )
                await conn.close()
                return
            except Exception:
                await asyncio.sleep(0.1)
        raise RuntimeError(f"postgres on port {self.port} did not start")

    async def kill(self) -> None:
        """An immediate shutdown, as a crash or an operator's stop would be."""
        if self.proc is not None and self.proc.returncode is None:
            # SIGQUIT: PostgreSQL's immediate shutdown (no checkpoint, like a crash).
            self.proc.send_signal(signal.SIGQUIT)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self.proc = None

    async def close(self) -> None:
        await self.kill()
        shutil.rmtree(self.root, ignore_errors=True)
