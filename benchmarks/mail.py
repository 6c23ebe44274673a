"""Mail benchmarks for `make bench`: parsing speed, and delivery-to-notification latency.

1. parse + classify over the sample corpus (tests/samples), against the stdlib's plain
   `email.message_from_bytes` over the same corpus in the same run;
2. IMAP APPEND to a real Dovecot (started here, like the tests do) → outbox row written by the
   running service: p50 / p99 over a steady stream of mails.
Only runs from a source checkout (it needs tests/samples and the Dovecot test helper).
"""

from __future__ import annotations

import asyncio
import email
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from benchmarks.goals import Goal, Section
from channels.mail.filters import MailPolicy, classify
from channels.mail.parse import MailParseError, parse_message

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "samples"


def sample_corpus() -> list[bytes]:
    files = sorted(SAMPLES.glob("*.eml"))
    if not files:
        raise FileNotFoundError(f"no sample mails in {SAMPLES} (run from a source checkout)")
    return [f.read_bytes() for f in files]


@dataclass(frozen=True, slots=True)
class ParseFigures:
    corpus: int  # distinct mails
    ours_per_second: float  # parse_message + classify
    stdlib_per_second: float  # email.message_from_bytes only
    ours_cpu_us: float = 0.0  # CPU time per mail, which other load hardly moves
    stdlib_cpu_us: float = 0.0

    @property
    def ratio(self) -> float:
        return self.ours_per_second / self.stdlib_per_second


def _rate(
    work: Callable[[bytes], object], corpus: Sequence[bytes], seconds: float
) -> tuple[float, float]:
    """Mails per second (wall clock) and µs of this process's CPU per mail."""
    done = 0
    started, cpu = time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - started) < seconds or done == 0:
        for raw in corpus:
            work(raw)
        done += len(corpus)
    return done / elapsed, (time.process_time() - cpu) / done * 1e6


def _ours(policy: MailPolicy) -> Callable[[bytes], object]:
    def work(raw: bytes) -> object:
        try:
            return classify(parse_message(raw, phone_region="DE"), policy, 0)
        except MailParseError:  # the broken sample: found out, as in production
            return None

    return work


def parse_bench(corpus: Sequence[bytes] | None = None, *, seconds: float = 2.0) -> ParseFigures:
    mails = list(corpus) if corpus is not None else sample_corpus()
    policy = MailPolicy(own_addresses=frozenset({"info@beispiel-shop.de"}))
    ours, ours_cpu = _rate(_ours(policy), mails, seconds)
    stdlib, stdlib_cpu = _rate(email.message_from_bytes, mails, seconds)
    return ParseFigures(len(mails), ours, stdlib, ours_cpu, stdlib_cpu)


@dataclass(frozen=True, slots=True)
class LatencyFigures:
    mails: int
    rate_per_second: float  # how fast mails were delivered
    p50_ms: float
    p99_ms: float
    max_ms: float


def _mail(n: int) -> bytes:
    return (
        f"From: Kunde {n} <kunde{n}@bench.example>\r\n"
        "To: info@beispiel-shop.de\r\n"
        f"Subject: Anfrage {n}\r\n"
        f"Message-ID: <bench-{n}-{time.time_ns()}@bench.example>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "Guten Tag, bitte schicken Sie ein Angebot.\r\n"
    ).encode()


async def latency_bench(
    mails: int = 200, *, rate_per_second: float = 20.0, database_url: str | None = None
) -> LatencyFigures:
    """Deliver `mails` at a steady rate; time each from APPEND to its outbox row."""
    from channels.mail.component import mail_component
    from crm.models import InboundEventLog, OutboxMessage
    from crm.schema import upgrade
    from leadbot.app import Service
    from leadbot.settings import Settings
    from tests.mail.dovecot import Dovecot  # a source checkout only

    with tempfile.TemporaryDirectory(prefix="leadbot-mail-bench-") as tmp:
        url = database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        server = Dovecot()
        await server.start()
        box: dict[str, Any] = {
            "name": "bench",
            "host": server.host,
            "port": server.port,
            "security": "none",
            "user": server.user,
            "password": server.password,
        }
        settings = Settings(
            database={"url": url}, mailboxes=[box], http={"host": "127.0.0.1", "port": 0}
        )
        service = Service(settings, components=[mail_component])
        try:
            await upgrade(service.db)
            await service.start()
            sent: dict[str, float] = {}
            seen: dict[str, float] = {}

            async def deliver() -> None:
                for n in range(mails):
                    raw = _mail(n)
                    mid = raw.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
                    sent[mid] = time.perf_counter()
                    await server.append(raw)
                    await asyncio.sleep(1 / rate_per_second)

            async def watch() -> None:
                last = 0
                while len(seen) < mails:
                    async with service.db.transaction() as s:
                        rows = await s.execute(
                            select(OutboxMessage.id, InboundEventLog.external_id)
                            .join(
                                InboundEventLog,
                                InboundEventLog.id
                                == OutboxMessage.payload["event_id"].as_integer(),
                            )
                            .where(OutboxMessage.id > last)
                        )
                        now = time.perf_counter()
                        for outbox_id, external_id in rows:
                            last = max(last, outbox_id)
                            seen.setdefault(external_id, now)
                    await asyncio.sleep(0.005)

            watcher = asyncio.create_task(watch())
            started = time.perf_counter()
            await deliver()
            rate = mails / (time.perf_counter() - started)
            await asyncio.wait_for(watcher, timeout=60)
        finally:
            await service.stop()
            await server.close()
    latencies = sorted((seen[m] - sent[m]) * 1000 for m in sent)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return LatencyFigures(mails, rate, cuts[49], cuts[98], latencies[-1])


async def report(quick: bool = False) -> Section:
    from tests.mail.dovecot import DOVECOT  # a source checkout only

    parsing = parse_bench(seconds=0.5 if quick else 2.0)
    latency = await latency_bench(50 if quick else 200) if DOVECOT.exists() else None
    goal = Goal(
        f"mail parse + classify, mails/s ({parsing.corpus} samples)",
        parsing.ours_per_second,
        f"`email.message_from_bytes` {parsing.stdlib_per_second:,.0f}",
        parsing.ratio,
        "(measure)",
        None,
    )
    if latency is None:
        latency_rows = [f"| APPEND → outbox row | skipped: no Dovecot at {DOVECOT} | | |"]
    else:
        latency_rows = [
            f"| APPEND → outbox row, p50 ms ({latency.mails} mails, "
            f"{latency.rate_per_second:.0f}/s) | {latency.p50_ms:,.0f} | | |",
            f"| APPEND → outbox row, p99 ms | {latency.p99_ms:,.0f} | | |",
            f"| APPEND → outbox row, max ms | {latency.max_ms:,.0f} | | |",
        ]
    text = "\n".join(
        [
            "### Mail",
            "",
            "| measure | value | baseline | × baseline |",
            "|---|---:|---:|---:|",
            f"| parse + classify, mails/s ({parsing.corpus} samples) "
            f"| {parsing.ours_per_second:,.0f} | {parsing.stdlib_per_second:,.0f} "
            f"| {parsing.ratio:.2f} |",
            f"| … CPU µs per mail | {parsing.ours_cpu_us:,.0f} | {parsing.stdlib_cpu_us:,.0f} "
            f"| {parsing.stdlib_cpu_us / parsing.ours_cpu_us:.2f} |",
            *latency_rows,
            "",
            "Baseline: `email.message_from_bytes` (stdlib, compat32, lazy) over the same "
            "corpus. Latency: real Dovecot on loopback, IDLE push, SQLite, one worker; "
            "it includes Dovecot's change notification (about half a second).",
        ]
    )
    return Section(text, [goal])
