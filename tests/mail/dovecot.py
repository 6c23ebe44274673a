"""A real Dovecot IMAP server on loopback for tests (Maildir, user alice / secret, no TLS).

Runs as root with mail stored under the `nobody` uid. Control calls use the stdlib imaplib in
a worker thread, so this helper stays independent of the aioimaplib client under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

DOVECOT = Path("/usr/sbin/dovecot")
HOST = "127.0.0.1"
MAIL_UID = MAIL_GID = 65534  # nobody / nogroup: the static userdb refuses uid 0
_T = TypeVar("_T")

_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = leadbot-test-{port}
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = {host}
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
mailbox_idle_check_interval = 1 secs
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {tls_port}
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _ok(result: tuple[str, Sequence[object]], what: str) -> Sequence[object]:
    status, data = result
    if status != "OK":
        raise RuntimeError(f"IMAP {what} failed: {data!r}")
    return data


def _text(data: Sequence[object]) -> str:
    """imaplib answers with bytes and (bytes, bytes) tuples; flatten them to one string."""
    parts: list[str] = []
    for item in data:
        for piece in item if isinstance(item, tuple) else (item,):
            if isinstance(piece, bytes):
                parts.append(piece.decode("utf-8", "replace"))
    return " ".join(parts)


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Dovecot:
    """One Dovecot instance in its own temporary directory; `close()` removes it all."""

    user = "alice"
    password = "secret"
    host = HOST

    def __init__(self, extra_config: str = "", *, tls: bool = False) -> None:
        """`extra_config` is appended to the config, e.g. to restrict the capabilities.

        `tls`: a self-signed certificate for 127.0.0.1 (`self.certificate`), STARTTLS on
        `port` and implicit TLS on `tls_port`.
        """
        self.extra_config = extra_config
        self.tls = tls
        self.root = Path(tempfile.mkdtemp(prefix="leadbot-dovecot-"))
        self.port = _free_port()
        self.tls_port = _free_port() if tls else 0
        self.certificate = self.root / "cert.pem"
        self.config = self.root / "dovecot.conf"
        self.maildir = self.root / "home" / self.user / "Maildir"
        self._pid_file = self.root / "run" / "master.pid"

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the server (writing its config the first time) and wait for the greeting."""
        if not self.config.exists():
            await asyncio.to_thread(self._prepare)
        errors = self.root / "start.err"
        # Not a pipe: the daemonized master inherits it and would keep it open forever.
        sink = await asyncio.to_thread(errors.open, "wb")
        with sink:
            proc = await asyncio.create_subprocess_exec(
                str(DOVECOT), "-c", str(self.config), stdout=sink, stderr=sink
            )
            code = await proc.wait()  # the launcher exits once the master has daemonized
        if code != 0:
            message = await asyncio.to_thread(errors.read_text, errors="replace")
            raise RuntimeError(f"dovecot did not start (exit {code}): {message}")
        await self._wait_for_greeting()

    async def stop(self) -> None:
        """Stop the server and drop every client connection, as a real shutdown does.

        Waits until master.pid is gone (a restart needs that). Dovecot's logged-in imap
        processes outlive their master here, so the instance's process group is killed too.
        """
        if not self._pid_file.exists():
            return
        pid = int((await asyncio.to_thread(self._pid_file.read_text)).strip())
        try:
            group = os.getpgid(pid)
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:  # it died on its own and left a stale pid file
            self._pid_file.unlink(missing_ok=True)
            return
        for _ in range(200):
            if not self._pid_file.exists():
                if group == pid:  # the daemonized master leads its own group, never ours
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(group, signal.SIGKILL)
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"dovecot (pid {pid}) did not stop within 10 s")

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def close(self) -> None:
        """Kill the server (a graceful stop takes a second) and delete its directory."""
        if self._pid_file.exists():
            pid = int((await asyncio.to_thread(self._pid_file.read_text)).strip())
            try:
                if os.getpgid(pid) == pid:  # the daemonized master leads its own group
                    os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        await asyncio.to_thread(shutil.rmtree, self.root, True)

    # --- mailbox operations ------------------------------------------------------------------

    async def append(
        self,
        raw: bytes,
        folder: str = "INBOX",
        *,
        flags: str = "",
        received: datetime | None = None,
    ) -> int:
        """Deliver a message via IMAP APPEND (`received` sets its INTERNALDATE); returns its UID."""

        def run(imap: imaplib.IMAP4) -> int:
            answer = _text(_ok(imap.append(_quote(folder), flags, received, raw), "APPEND"))
            found = re.search(r"APPENDUID \d+ (\d+)", answer)
            if found is None:
                raise RuntimeError(f"APPEND gave no UID: {answer}")
            return int(found[1])

        return await self._session(run)

    async def uids(self, folder: str = "INBOX") -> list[int]:
        def run(imap: imaplib.IMAP4) -> list[int]:
            _ok(imap.select(_quote(folder), readonly=True), "SELECT")
            return [int(u) for u in _text(_ok(imap.uid("SEARCH", "ALL"), "SEARCH")).split()]

        return await self._session(run)

    async def flags(self, folder: str, uid: int) -> frozenset[str]:
        def run(imap: imaplib.IMAP4) -> frozenset[str]:
            _ok(imap.select(_quote(folder), readonly=True), "SELECT")
            answer = _text(_ok(imap.uid("FETCH", str(uid), "(FLAGS)"), "FETCH"))
            found = re.search(r"FLAGS \(([^)]*)\)", answer)
            if found is None:
                raise KeyError(f"no message with UID {uid} in {folder}")
            return frozenset(found[1].split())

        return await self._session(run)

    async def move(self, uid: int, source: str, target: str) -> None:
        """What a person does in a mail client: drag a message to another folder."""

        def run(imap: imaplib.IMAP4) -> None:
            _ok(imap.select(_quote(source)), "SELECT")
            _ok(imap.uid("MOVE", str(uid), _quote(target)), "MOVE")

        await self._session(run)

    async def create_folder(self, name: str) -> None:
        await self._session(lambda imap: _ok(imap.create(_quote(name)), "CREATE"))

    async def uidvalidity(self, folder: str = "INBOX") -> int:
        def run(imap: imaplib.IMAP4) -> int:
            answer = _text(_ok(imap.status(_quote(folder), "(UIDVALIDITY)"), "STATUS"))
            found = re.search(r"UIDVALIDITY (\d+)", answer)
            if found is None:
                raise RuntimeError(f"STATUS gave no UIDVALIDITY: {answer}")
            return int(found[1])

        return await self._session(run)

    async def change_uidvalidity(self, folder: str = "INBOX") -> int:
        """Make the server forget a folder's UIDs, as after a mailbox rebuild.

        The messages stay and get new UIDs under a new UIDVALIDITY, which is returned.
        """
        before = await self.uidvalidity(folder)
        await self.stop()
        await asyncio.to_thread(self._forget_uids, folder)
        await self.start()
        await self.uids(folder)  # STATUS may say 0 until the rebuilt folder was opened once
        after = await self.uidvalidity(folder)
        if after == before:
            raise RuntimeError(f"UIDVALIDITY of {folder} stayed {before}")
        return after

    # --- internals -----------------------------------------------------------------------------

    def _folder_dir(self, folder: str) -> Path:
        return self.maildir if folder.upper() == "INBOX" else self.maildir / f".{folder}"

    def _prepare(self) -> None:
        """Config, password file and an empty Maildir the mail uid owns (runs in a thread)."""
        self.root.chmod(0o755)  # mail processes run as nobody and must reach the Maildir
        ssl = "ssl = no"
        if self.tls:
            key = self.root / "key.pem"
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                 "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}",
                 "-keyout", str(key), "-out", str(self.certificate)],
                check=True,
                capture_output=True,
            )  # fmt: skip
            ssl = f"ssl = yes\nssl_cert = <{self.certificate}\nssl_key = <{key}"
        settings = {"root": self.root, "host": HOST, "port": self.port, "tls_port": self.tls_port}
        config = _CONFIG.format(uid=MAIL_UID, gid=MAIL_GID, ssl=ssl, **settings)
        config += self.extra_config
        self.config.write_text(config)
        (self.root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}\n")
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        for path in (self.maildir.parent, *self.maildir.parent.rglob("*")):
            os.chown(path, MAIL_UID, MAIL_GID)

    def _forget_uids(self, folder: str) -> None:
        """Delete the UID list and indexes: Dovecot then numbers the files afresh.

        The message files (and the flags in their names) stay where they are.
        """
        box = self._folder_dir(folder)
        doomed = [*box.glob("dovecot-uidlist*"), *box.glob("dovecot.index*")]
        doomed += self.maildir.glob("dovecot.list.index*")  # caches every folder's UIDVALIDITY
        for path in doomed:
            path.unlink(missing_ok=True)

    async def _wait_for_greeting(self) -> None:
        for _ in range(200):
            try:
                reader, writer = await asyncio.open_connection(HOST, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            greeting = await reader.readline()
            writer.close()
            await writer.wait_closed()
            if greeting.startswith(b"* OK"):
                return
            await asyncio.sleep(0.05)
        log = self.root / "dovecot.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise TimeoutError(f"dovecot did not greet on port {self.port} within 10 s\n{tail}")

    async def _session(self, run: Callable[[imaplib.IMAP4], _T]) -> _T:
        def in_thread() -> _T:
            with imaplib.IMAP4(HOST, self.port, timeout=10) as imap:
                imap.login(self.user, self.password)
                return run(imap)

        return await asyncio.to_thread(in_thread)
