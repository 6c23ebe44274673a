"""Servers the chaos tests own and may break: a redis-server and a PostgreSQL cluster, each on a
free loopback port with its data in a temporary directory, never the shared ones.

Both are driven by blocking calls (subprocess, a socket ping); async tests wrap them in
`asyncio.to_thread`. Every instance removes its processes and files in `close()`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until(ok: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")
        time.sleep(0.05)


class RedisServer:
    """redis-server with an fsync'd append-only file: a write it acknowledged survives kill -9.
    `kill()` then `start()` brings it back on the same port with the same data."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (Debian package redis-server)")
        self.exe = exe
        self.dir = Path(tempfile.mkdtemp(prefix="leadbot-chaos-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout: float = 20) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        options = {
            "bind": HOST,
            "port": str(self.port),
            "dir": str(self.dir),
            "appendonly": "yes",
            "appendfsync": "always",  # every write on disk before Redis answers it
            "save": "",
            "logfile": str(self.dir / "redis.log"),
        }
        args = [part for key, value in options.items() for part in (f"--{key}", value)]
        self.proc = subprocess.Popen(
            [self.exe, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_until(self.ping, f"redis-server on port {self.port}", timeout)

    def ping(self) -> bool:
        """PONG, and the data set is loaded (a LOADING reply is no PONG)."""
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: what the AOF holds is what survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def pg_bin() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian keeps them apart by version)."""
    versions = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    versions = [v for v in versions if v.parent.name.isdigit()]
    if versions:
        return max(versions, key=lambda v: int(v.parent.name))
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL server binaries (initdb) are not installed")
    return Path(initdb).resolve().parent


class PgCluster:
    """A throw-away PostgreSQL cluster: initdb into a temporary directory, trust auth for
    loopback, fsync off (its durability is not under test: the stop is a clean one). PostgreSQL
    refuses to run as root, so as root the cluster belongs to the `postgres` OS user."""

    def __init__(self) -> None:
        self.bin = pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="leadbot-chaos-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        try:
            self._run(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                "-E", "UTF8", "--no-sync", "--no-instructions",
            )  # fmt: skip
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\n"
                f"listen_addresses = '{HOST}'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\n"
            )

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        cmd = [*self._as, str(self.bin / tool), *args]
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        if done.returncode != 0:
            out = (done.stdout + done.stderr).decode(errors="replace")[-2000:]
            raise RuntimeError(f"{tool} failed ({done.returncode}):\n{out}")

    def create_database(self, name: str) -> None:
        self._run("createdb", "-h", HOST, "-p", str(self.port), "-U", "postgres", name)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@{HOST}:{self.port}/{database}"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """A fast shutdown: clients are cut off, as in a restart for maintenance."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(Exception):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
