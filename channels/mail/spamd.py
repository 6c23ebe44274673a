"""A small async client of SpamAssassin's spamd (the SPAMC/SPAMD protocol, `SYMBOLS`).

One TCP connection per mail, as spamc does:

    SYMBOLS SPAMC/1.5\\r\\n  Content-length: <n>\\r\\n  \\r\\n  <message>
    SPAMD/1.1 0 EX_OK\\r\\n  Content-length: <n>\\r\\n  Spam: True ; 1002.7 / 5.0\\r\\n  \\r\\n
    GTUBE,MISSING_DATE,…

The answer is parsed sans-I/O (`parse_answer`); everything that goes wrong on the way is
`SpamdError`, so the caller has one thing to catch.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass

MAX_MESSAGE_BYTES = 512_000  # spamc's default limit (-s): bigger mail is not scanned
_MAX_ANSWER_BYTES = 64 * 1024
_STATUS = re.compile(rb"^SPAMD/(\d+)\.(\d+)\s+(\d+)\s*(.*)$")
_SPAM = re.compile(r"^\s*(true|false|yes|no)\s*;\s*(-?[\d.]+)\s*/\s*(-?[\d.]+)\s*$", re.I)


class SpamdError(Exception):
    """spamd could not be reached, timed out or answered something unusable."""


@dataclass(frozen=True, slots=True)
class SpamdResult:
    spam: bool
    score: float
    threshold: float
    symbols: tuple[str, ...] = ()  # the rules that hit, e.g. GTUBE


@dataclass(frozen=True, slots=True)
class SpamdClient:
    host: str
    port: int = 783
    timeout: float = 10.0  # connect, send and answer together

    async def symbols(self, message: bytes) -> SpamdResult:
        """Scan one message; `SpamdError` when spamd is down, slow or confused."""
        try:
            return await asyncio.wait_for(self._exchange(message), self.timeout)
        except TimeoutError:
            raise SpamdError(f"no answer from spamd in {self.timeout:g} s") from None
        except OSError as exc:
            raise SpamdError(f"spamd at {self.host}:{self.port}: {exc.strerror or exc}") from None

    async def _exchange(self, message: bytes) -> SpamdResult:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(request(message))
            await writer.drain()
            with contextlib.suppress(OSError):
                writer.write_eof()
            answer = b""  # spamd closes the connection after its answer
            while len(answer) < _MAX_ANSWER_BYTES and (chunk := await reader.read(4096)):
                answer += chunk
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return parse_answer(answer)


def request(message: bytes) -> bytes:
    return b"SYMBOLS SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(message) + message


def parse_answer(answer: bytes) -> SpamdResult:
    head, sep, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = _STATUS.match(lines[0]) if lines else None
    if status is None:
        raise SpamdError(f"not a spamd answer: {lines[0][:60]!r}")
    if int(status[3]) != 0:
        raise SpamdError(
            f"spamd refused: {status[3].decode()} {status[4][:60].decode('ascii', 'replace')}"
        )
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.decode("latin-1").partition(":")
        if colon:
            fields[name.strip().lower()] = value.strip()
    verdict = _SPAM.match(fields.get("spam", ""))
    if not sep or verdict is None:
        raise SpamdError("spamd answered without a Spam: header")
    symbols = body.decode("ascii", "replace").replace("\r\n", "").split(",")
    return SpamdResult(
        spam=verdict[1].lower() in ("true", "yes"),
        score=float(verdict[2]),
        threshold=float(verdict[3]),
        symbols=tuple(s.strip() for s in symbols if s.strip()),
    )
