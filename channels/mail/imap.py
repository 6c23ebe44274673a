"""A typed IMAP session over aioimaplib: the handful of commands the mailbox worker needs.

Every command is raced against the connection going away (aioimaplib would otherwise wait for
its own timeout, up to 29 minutes in IDLE), and every failure becomes `ImapError`, so the worker
has one thing to catch before it reconnects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, TypeVar

import aioimaplib

log = logging.getLogger(__name__)

Security = Literal["tls", "starttls", "none"]
_T = TypeVar("_T")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CODE = re.compile(rb"\[(UIDVALIDITY|UIDNEXT) (\d+)\]")
_LITERAL = re.compile(rb"FETCH \(.*\{(\d+)\}$")
_UID = re.compile(rb"\bUID (\d+)\b")
_INTERNALDATE = re.compile(rb'\bINTERNALDATE "([^"]+)"')


class ImapError(Exception):
    """The connection failed or the server refused a command: reconnect or give up the step."""


class ImapRefused(ImapError):
    """The server answered NO or BAD; the connection itself is still usable."""


@dataclass(frozen=True, slots=True)
class ImapServer:
    host: str
    port: int
    security: Security
    user: str
    password: str
    ca_file: str | None = None  # trust this CA (self-signed company server), not the system's

    def __repr__(self) -> str:  # never print the password
        return f"ImapServer({self.user}@{self.host}:{self.port}, {self.security})"


@dataclass(frozen=True, slots=True)
class Headers:
    """The header section of one message, and when the server received it."""

    uid: int
    received: datetime | None
    raw: bytes  # as the server sent it, ending in a blank line


@dataclass(frozen=True, slots=True)
class Selected:
    uidvalidity: int
    uidnext: int | None  # optional in old servers; then the highest UID is searched for


def quote_folder(name: str) -> str:
    """A folder name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 5.1.3)."""
    out: list[str] = []
    wide: list[str] = []

    def flush() -> None:
        if wide:
            data = base64.b64encode("".join(wide).encode("utf-16-be")).decode()
            out.append("&" + data.rstrip("=").replace("/", ",") + "-")
            wide.clear()

    for ch in name:
        if " " <= ch <= "~":
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            wide.append(ch)
    flush()
    encoded = "".join(out).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{encoded}"'


def imap_date(day: date) -> str:
    """The date format of SEARCH SINCE, independent of the locale."""
    return f"{day.day:02d}-{_MONTHS[day.month - 1]}-{day.year:04d}"


def _internaldate(value: str) -> datetime | None:
    """`07-Dec-2026 02:20:45 +0000` (RFC 3501 date-time), locale-independent."""
    try:
        day, month, rest = value.strip().split("-", 2)
        return datetime.strptime(
            f"{rest[:4]}-{_MONTHS.index(month) + 1:02d}-{int(day):02d}{rest[4:]}",
            "%Y-%m-%d %H:%M:%S %z",
        )
    except ValueError:
        return None


def _text(lines: Sequence[Any]) -> str:
    return " ".join(bytes(x).decode("utf-8", "replace") for x in lines if isinstance(x, bytes))


class ImapSession:
    """One logged-in connection. Create it with `ImapSession.open`; always `close()` it."""

    def __init__(self, client: Any, lost: asyncio.Event, timeout: float) -> None:
        self._client = client
        self._lost = lost
        self.timeout = timeout
        self.capabilities: frozenset[str] = frozenset()

    @classmethod
    async def open(cls, server: ImapServer, *, timeout: float) -> ImapSession:
        lost = asyncio.Event()
        context = None
        if server.security != "none":
            context = ssl.create_default_context(cafile=server.ca_file)
        client = aioimaplib.IMAP4(
            host=server.host,
            port=server.port,
            timeout=timeout,
            conn_lost_cb=lambda _exc: lost.set(),
            ssl_context=context if server.security == "tls" else None,
        )
        session = cls(client, lost, timeout)
        try:
            await session._call(client.wait_hello_from_server(), "connect")
            if server.security == "starttls":
                assert context is not None
                await session._starttls(context, server.host)
            answer = await session._call(client.login(server.user, server.password), "LOGIN")
            if answer.result != "OK":
                raise ImapRefused(f"login as {server.user} refused: {_text(answer.lines)}")
            # The capabilities after login differ from the greeting's (MOVE, UIDPLUS …).
            await session._call(client.protocol.capability(), "CAPABILITY")
            session.capabilities = frozenset(c.upper() for c in client.protocol.capabilities)
        except BaseException:  # a half-open session: no logout to wait for
            await session.close(logout=False)
            raise
        return session

    async def _starttls(self, context: ssl.SSLContext, host: str) -> None:
        # aioimaplib 2.0.3 knows the STARTTLS command but has no method for the upgrade.
        protocol = self._client.protocol
        if "STARTTLS" not in {c.upper() for c in protocol.capabilities}:
            raise ImapError("the server does not offer STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        answer = await self._call(protocol.execute(command), "STARTTLS")
        if answer.result != "OK":
            raise ImapRefused(f"STARTTLS refused: {_text(answer.lines)}")
        loop = asyncio.get_running_loop()
        transport = await self._call(
            loop.start_tls(protocol.transport, protocol, context, server_hostname=host),
            "TLS handshake",
        )
        protocol.transport = transport
        # Capabilities seen before TLS must not be trusted (RFC 3501 6.2.1).
        await self._call(protocol.capability(), "CAPABILITY")

    # --- commands ------------------------------------------------------------------------------

    def offers(self, capability: str) -> bool:
        return capability.upper() in self.capabilities

    async def select(self, folder: str) -> Selected:
        answer = await self._ok(self._client.protocol.select(quote_folder(folder)), "SELECT")
        codes = {m[1]: int(m[2]) for line in answer for m in _CODE.finditer(bytes(line))}
        if b"UIDVALIDITY" not in codes:
            raise ImapError(f"SELECT {folder} gave no UIDVALIDITY")
        return Selected(uidvalidity=codes[b"UIDVALIDITY"], uidnext=codes.get(b"UIDNEXT"))

    async def search(self, *criteria: str) -> list[int]:
        """UIDs matching the criteria, ascending."""
        lines = await self._ok(
            self._client.protocol.search(*criteria, by_uid=True, charset=None), "UID SEARCH"
        )
        # aioimaplib strips "* SEARCH" off the untagged lines; the last line is the status text.
        found = {int(w) for line in lines[:-1] for w in bytes(line).split() if w.isdigit()}
        return sorted(found)

    async def fetch(self, uid: int) -> bytes | None:
        """The whole message without setting \\Seen; None if it is gone (expunged meanwhile)."""
        lines = await self._ok(
            self._client.protocol.fetch(
                str(uid), "(UID BODY.PEEK[])", by_uid=True, timeout=self.timeout
            ),
            "UID FETCH",
            limited=False,  # aioimaplib's own timer restarts with every chunk of a big mail
        )
        marker = re.compile(rb"\bUID %d\b" % uid)
        for index, line in enumerate(lines[:-1]):
            if isinstance(line, bytes) and _LITERAL.search(line):
                literal = lines[index + 1]
                tail = lines[index + 2] if index + 2 < len(lines) else b""
                if marker.search(line) or (isinstance(tail, bytes) and marker.search(tail)):
                    return bytes(literal)
        return None

    async def headers(self, uids: Sequence[int]) -> list[Headers]:
        """The header sections of these messages (without setting \\Seen), in the server's
        order; messages gone meanwhile are left out."""
        if not uids:
            return []
        lines = await self._ok(
            self._client.protocol.fetch(
                ",".join(str(u) for u in uids),
                "(UID INTERNALDATE BODY.PEEK[HEADER])",
                by_uid=True,
                timeout=self.timeout,
            ),
            "UID FETCH",
        )
        found: list[Headers] = []
        for index, line in enumerate(lines[:-2]):
            if not isinstance(line, bytes) or not _LITERAL.search(line):
                continue
            tail = lines[index + 2]
            around = line + b" " + (tail if isinstance(tail, bytes) else b"")
            uid = _UID.search(around)
            if uid is not None:
                when = _INTERNALDATE.search(around)
                received = _internaldate(when[1].decode()) if when else None
                found.append(Headers(int(uid[1]), received, bytes(lines[index + 1])))
        return found

    async def add_flags(self, uid: int, *flags: str) -> None:
        await self._store(uid, "+FLAGS.SILENT", flags)

    async def remove_flags(self, uid: int, *flags: str) -> None:
        await self._store(uid, "-FLAGS.SILENT", flags)

    async def _store(self, uid: int, how: str, flags: Sequence[str]) -> None:
        flag_list = "(" + " ".join(flags) + ")"
        await self._ok(
            self._client.protocol.store(str(uid), how, flag_list, by_uid=True), "UID STORE"
        )

    async def create(self, folder: str) -> None:
        """Create a folder; one that exists already is fine."""
        answer = await self._call(
            self._client.protocol.simple_command("CREATE", quote_folder(folder)), "CREATE"
        )
        if answer.result != "OK" and b"ALREADYEXISTS" not in b" ".join(
            bytes(x) for x in answer.lines if isinstance(x, bytes)
        ):
            raise ImapRefused(f"CREATE {folder} refused: {_text(answer.lines)}")

    async def move(self, uid: int, folder: str) -> None:
        """MOVE when offered, else COPY, flag \\Deleted and expunge (just this UID if possible)."""
        target = quote_folder(folder)
        protocol = self._client.protocol
        if self.offers("MOVE"):
            await self._ok(protocol.move(str(uid), target, by_uid=True), "UID MOVE")
            return
        await self._ok(protocol.copy(str(uid), target, by_uid=True), "UID COPY")
        await self.add_flags(uid, "\\Deleted")
        if self.offers("UIDPLUS"):
            await self._ok(protocol.expunge(str(uid), by_uid=True), "UID EXPUNGE")
        else:  # also removes what others flagged \Deleted; without UIDPLUS there is no choice
            await self._ok(protocol.expunge(), "EXPUNGE")

    async def noop(self) -> None:
        await self._ok(self._client.protocol.simple_command("NOOP"), "NOOP")

    async def idle(self, renew: float, stop: asyncio.Event) -> bool:
        """Wait in IDLE until the server reports a change (True), `renew` passes or stop is set.

        Pushes left over from an earlier IDLE are dropped first; they were handled by the sync
        that followed them.
        """
        queue = self._client.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()
        idle = await self._call(self._client.idle_start(timeout=renew), "IDLE")
        push = asyncio.ensure_future(self._client.wait_server_push(timeout=renew + self.timeout))
        stopping = asyncio.ensure_future(stop.wait())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({push, stopping, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (push, stopping, lost):
                task.cancel()
        if self._lost.is_set():
            idle.cancel()
            raise ImapError("connection lost in IDLE")
        changed = False
        if push.done() and not push.cancelled() and push.exception() is None:
            changed = push.result() != aioimaplib.STOP_WAIT_SERVER_PUSH
        self._client.idle_done()
        answer = await self._call(idle, "IDLE DONE")
        if answer.result != "OK":
            raise ImapError(f"IDLE ended with {answer.result}: {_text(answer.lines)}")
        return changed

    async def close(self, *, logout: bool = True) -> None:
        """Log out politely if asked and the connection still works, then drop it. Dropped
        even when the logout is cancelled (a caller's deadline passed meanwhile)."""
        protocol = self._client.protocol
        try:
            if (
                logout
                and not self._lost.is_set()
                and protocol.state in (aioimaplib.AUTH, aioimaplib.SELECTED)
            ):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(protocol.logout(), timeout=min(self.timeout, 2.0))
        finally:
            if protocol.transport is not None:
                protocol.transport.close()
            connecting = getattr(self._client, "_client_task", None)  # a connect that timed out
            for task in (connecting, *self._client.tasks, *protocol.tasks):
                if task is not None and not task.done():
                    task.cancel()
            self._client.tasks.clear()

    # --- plumbing ------------------------------------------------------------------------------

    async def _ok(self, command: Awaitable[Any], what: str, *, limited: bool = True) -> list[Any]:
        answer = await self._call(command, what, limited=limited)
        if answer.result != "OK":
            raise ImapRefused(f"{what} refused: {answer.result} {_text(answer.lines)}")
        return list(answer.lines)

    async def _call(self, command: Awaitable[_T], what: str, *, limited: bool = True) -> _T:
        """Await one command, at most the session timeout if `limited`."""
        task = asyncio.ensure_future(command)
        if self._lost.is_set():
            task.cancel()
            raise ImapError(f"{what}: connection lost")
        lost = asyncio.ensure_future(self._lost.wait())
        limit = self.timeout if limited else None
        try:
            done, _ = await asyncio.wait(
                {task, lost}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            lost.cancel()
        if task not in done:
            task.cancel()
            reason = "connection lost" if self._lost.is_set() else f"no answer in {limit} s"
            raise ImapError(f"{what}: {reason}")
        try:
            return task.result()
        except ImapError:
            raise
        except (aioimaplib.AioImapException, OSError, TimeoutError, ssl.SSLError) as exc:
            raise ImapError(f"{what}: {exc or type(exc).__name__}") from exc
