"""A redis-server of a test's own (tests that stop or restart Redis never touch the shared one)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """`redis-server` on a free loopback port with its files in `root`; appendonly: AOF on
    (what survives a restart), else no persistence at all."""

    def __init__(self, root: Path, *, appendonly: bool) -> None:
        self.root = root
        self.appendonly = appendonly
        self.port = free_port()
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._proc = await asyncio.create_subprocess_exec(
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.root),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--save",
            "",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        probe = Redis.from_url(self.url)
        try:
            async with asyncio.timeout(20):
                while True:
                    try:
                        await probe.ping()
                        return
                    except RedisConnectionError:
                        await asyncio.sleep(0.05)
        finally:
            await probe.aclose()

    async def stop(self) -> None:
        """SIGTERM: a clean shutdown (the AOF is flushed, when there is one)."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            await asyncio.wait_for(self._proc.wait(), 20)
        self._proc = None
