"""What a chaos scenario is made of: `leadbot` child processes, a PBX-like sender of signed
call webhooks, and an audit of the database that counts what was lost and what doubled.

The promise under test: every event Leadbot acknowledged (a 2xx to the webhook) ends up in the
inbound event log exactly once: 0 lost, 0 doubled, whatever routine fault happened meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from sqlalchemy import select

from channels.phone.signatures import sign_generic
from crm.db import Database
from crm.models import Activity, Communication, InboundEventLog, OutboxMessage
from tests.conftest import leadbot_process, leadbot_run
from tests.servers import end_process

SECRET = "chaos-webhook-secret"
LINE = "+4989111222"
# What a PBX retries (after Retry-After, or a short backoff): the service says "later".
# Anything else that is not a 2xx is an answer it gives up on.
RETRYABLE = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 5.0
RESULTS = Path(
    os.environ.get("LEADBOT_CHAOS_RESULTS") or Path(__file__).with_name("last-run.jsonl")
)


def leadbot_env(**settings: str) -> dict[str, str]:
    """The environment of a `leadbot` child: none of ours LEADBOT_* leak in; `settings` are
    keys such as database__url, set as LEADBOT_DATABASE__URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADBOT_")}
    env.update(LEADBOT_PHONE__WEBHOOK_SECRET=SECRET, LEADBOT_PHONE__REGION="DE")
    env.update({f"LEADBOT_{k.upper()}": v for k, v in settings.items()})
    return env


# --- leadbot processes --------------------------------------------------------------------


class Leadbot:
    """One `leadbot` child process; its log goes to a file (a pipe nobody reads would fill
    up and stall it)."""

    def __init__(self, name: str, args: tuple[str, ...], env: dict[str, str], logs: Path):
        self.name, self.args, self.env = name, args, env
        self.log = logs / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None
        self._copy: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await leadbot_process(
            "--log-level", "WARNING", *self.args, env=self.env, stdout=asyncio.subprocess.DEVNULL
        )
        assert self.proc.stderr is not None
        self._copy = asyncio.create_task(self._keep_log(self.proc.stderr))

    async def _keep_log(self, stream: asyncio.StreamReader) -> None:
        with self.log.open("ab") as fh:
            while line := await stream.readline():
                fh.write(line)
                fh.flush()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self._reap()

    async def stop(self) -> None:
        if self.proc is not None:
            await end_process(self.proc)
        await self._reap()

    async def _reap(self) -> None:
        if self.proc is not None:
            await asyncio.wait_for(self.proc.wait(), 30)
        if self._copy is not None:
            await asyncio.wait_for(self._copy, 10)
            self._copy = None

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"--- {self.name}: no log"
        # Log records and the last line of each traceback; not the frames in between.
        text = [line for line in text if line and not line[0].isspace()]
        state = "running" if self.alive else f"exited {self.proc.returncode if self.proc else '-'}"
        return "\n".join([f"--- {self.name} ({state}), {self.log}:", *text[-lines:]])


class Fleet:
    """The leadbot processes of one test; whatever is still running is stopped at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.members: list[Leadbot] = []

    async def run(self, name: str, *args: str, env: dict[str, str]) -> Leadbot:
        bot = Leadbot(name, args, env, self.logs)
        await bot.start()
        self.members.append(bot)
        return bot

    async def serve(self, name: str, port: int, env: dict[str, str]) -> Leadbot:
        """`leadbot serve` on `port`, once /healthz answers."""
        bot = await self.run(name, "serve", env=env)
        await wait_healthy(bot, port)
        return bot

    async def close(self) -> None:
        for bot in reversed(self.members):
            with contextlib.suppress(Exception):
                await bot.stop()

    def tails(self) -> str:
        return "\n".join(bot.tail() for bot in self.members)


async def migrate(env: dict[str, str]) -> None:
    code, _, err = await leadbot_run("db", "upgrade", env=env, timeout=120)
    assert code == 0, f"leadbot db upgrade failed: {err}"


async def wait_healthy(bot: Leadbot, port: int, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            assert bot.alive, f"{bot.name} exited while starting\n{bot.tail()}"
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                    if r.status == 200:
                        return
            assert loop.time() < deadline, f"{bot.name} not up in {timeout:.0f} s\n{bot.tail()}"
            await asyncio.sleep(0.1)


# --- the sender ---------------------------------------------------------------------------


@dataclass
class Call:
    call_id: str
    phone: str
    answers: list[str] = field(default_factory=list)  # per attempt: status, refused, timeout
    acked_at: float | None = None  # loop time of the first 2xx
    gave_up: str | None = None  # the last answer, when no 2xx came


class Pbx:
    """Sends one signed `call.ended` webhook per call id at a steady rate, each retried the
    way a PBX retries (Retry-After or a short backoff) until it is acknowledged or
    `give_up_at` passes. Every body is different (its own call id and caller number)."""

    def __init__(self, http: aiohttp.ClientSession, port: int, prefix: str, rate: float) -> None:
        self.http, self.prefix, self.rate = http, prefix, rate
        self.url = f"http://127.0.0.1:{port}/hooks/calls"
        self.calls: dict[str, Call] = {}
        self.give_up_at = float("inf")

    async def stream(self, seconds: float, patience: float) -> None:
        """Send for `seconds`; retries go on until `patience` seconds after that."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        self.give_up_at = start + seconds + patience
        tasks: list[asyncio.Task[None]] = []
        try:
            for i in range(int(seconds * self.rate)):
                delay = start + i / self.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                call = Call(f"{self.prefix}-{i:05d}", f"+4930{5_000_000 + i}")
                self.calls[call.call_id] = call
                tasks.append(asyncio.create_task(self._deliver(call)))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    def acknowledged(self) -> set[str]:
        return {c.call_id for c in self.calls.values() if c.acked_at is not None}

    async def _deliver(self, call: Call) -> None:
        loop = asyncio.get_running_loop()
        body = json.dumps(
            {
                "event": "call.ended",
                "call_id": call.call_id,
                "direction": "incoming",
                "from": call.phone,
                "to": LINE,
                "duration": 30,
            }
        ).encode()
        backoff = 0.25
        while True:
            wait = backoff
            headers = {
                "Content-Type": "application/json",
                "X-Leadbot-Signature": sign_generic(SECRET, int(time.time()), body),
            }
            try:
                async with self.http.post(self.url, data=body, headers=headers) as r:
                    await r.read()
                    answer, retry_after = r.status, r.headers.get("Retry-After", "")
                call.answers.append(str(answer))
                if 200 <= answer < 300:
                    call.acked_at = loop.time()
                    return
                if answer not in RETRYABLE:
                    call.gave_up = str(answer)
                    return
                if retry_after.strip().isdigit():
                    wait = min(float(retry_after), MAX_RETRY_AFTER)
            except TimeoutError:
                call.answers.append("timeout")
            except aiohttp.ClientConnectorError:
                call.answers.append("refused")
            except aiohttp.ClientError:
                call.answers.append("disconnected")
            if loop.time() + wait > self.give_up_at:
                call.gave_up = call.answers[-1]
                return
            await asyncio.sleep(wait * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, 2.0)


# --- the audit ----------------------------------------------------------------------------


async def processed_ids(db: Database, prefix: str) -> set[str]:
    """Call ids of this run in the inbound event log."""
    async with db.read() as s:
        rows = await s.scalars(
            select(InboundEventLog.external_id).where(
                InboundEventLog.channel == "call",
                InboundEventLog.external_id.like(f"{prefix}-%"),
            )
        )
        return {ext.rsplit(":", 1)[0] for ext in rows}


async def wait_processed(
    db: Database, prefix: str, want: set[str], *, stall: float = 20, cap: float = 120
) -> tuple[set[str], float | None]:
    """Poll the log until every id of `want` is in it. Gives up after `stall` seconds without
    progress (a database that does not answer is no progress) or `cap` seconds in all.
    Returns the ids found and the loop time they were all there (None: they never were)."""
    loop = asyncio.get_running_loop()
    start = last_change = loop.time()
    seen: set[str] = set()
    while True:
        with contextlib.suppress(Exception):  # the database may be on its way back
            now_seen = await processed_ids(db, prefix)
            if len(now_seen) != len(seen):
                seen, last_change = now_seen, loop.time()
        if want <= seen:
            return seen, loop.time()
        now = loop.time()
        if now - last_change > stall or now - start > cap:
            return seen, None
        await asyncio.sleep(0.2)


async def effects(
    db: Database, calls: dict[str, Call], prefix: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Call ids of the log whose event did not take effect exactly once: one log row, one lead
    (by the caller's number), one call activity counting one call, one rep notification.
    Returns those with something doubled, and those with something missing."""
    by_phone = {c.phone: c.call_id for c in calls.values()}
    async with db.read() as s:
        log_rows = list(
            await s.execute(
                select(InboundEventLog.id, InboundEventLog.external_id).where(
                    InboundEventLog.external_id.like(f"{prefix}-%")
                )
            )
        )
        lead_phones = list(
            await s.scalars(
                select(Communication.value).where(
                    Communication.owner_type == "lead", Communication.kind == "phone"
                )
            )
        )
        activities = list(
            await s.execute(
                select(Activity.counterparty, Activity.attempts).where(Activity.kind == "call")
            )
        )
        payloads = list(await s.scalars(select(OutboxMessage.payload)))
    log_ids = {log_id: ext.rsplit(":", 1)[0] for log_id, ext in log_rows}
    counts = {
        "log rows": Counter(log_ids.values()),
        "leads": Counter(by_phone.get(p or "") for p in lead_phones),
        "call activities": Counter(by_phone.get(p or "") for p, _ in activities),
        "notifications": Counter(log_ids.get(p.get("event_id")) for p in payloads),
    }
    counted_twice = {by_phone.get(p or ""): n for p, n in activities if n > 1}
    doubled: dict[str, list[str]] = {}
    missing: dict[str, list[str]] = {}
    for call_id in sorted(set(log_ids.values())):
        for what, counter in counts.items():
            n = counter.get(call_id, 0)
            if n != 1:
                (doubled if n > 1 else missing).setdefault(call_id, []).append(f"{n} {what}")
        if call_id in counted_twice:
            doubled.setdefault(call_id, []).append(f"one call counted {counted_twice[call_id]}x")
    return _joined(doubled), _joined(missing)


def _joined(found: dict[str, list[str]]) -> dict[str, str]:
    return {call_id: ", ".join(what) for call_id, what in found.items()}


# --- one scenario -------------------------------------------------------------------------


def git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, timeout=5, check=False
        )
        return out.stdout.decode().strip()
    except OSError:
        return ""


@dataclass
class Figures:
    scenario: str
    sent: int
    acknowledged: int
    processed: int
    lost: int
    doubled: int
    incomplete: int  # in the log, but its lead, activity or notification is missing
    recovery_s: float | None  # from the fault's end until all acknowledged before it were in
    gave_up: int  # calls never acknowledged: the last answer was not one a PBX retries
    answers: dict[str, int]  # every attempt's answer, counted
    lost_sample: list[str]
    doubled_sample: dict[str, str]
    incomplete_sample: dict[str, str]
    gave_up_sample: dict[str, str]
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    commit: str = field(default_factory=git_head)

    def summary(self) -> str:
        rec = "never" if self.recovery_s is None else f"{self.recovery_s:.1f} s"
        answers = " ".join(f"{k}:{v}" for k, v in sorted(self.answers.items()))
        return (
            f"chaos {self.scenario}: sent {self.sent}, acknowledged {self.acknowledged}, "
            f"processed {self.processed}, lost {self.lost}, doubled {self.doubled}, "
            f"incomplete {self.incomplete}, "
            f"recovery {rec}, gave up {self.gave_up} (answers {answers})"
        )

    def problems(self) -> list[str]:
        out = []
        if self.lost:
            out.append(
                f"{self.lost} of {self.acknowledged} acknowledged events never reached the "
                f"event log (e.g. {', '.join(self.lost_sample)})"
            )
        if self.doubled:
            sample = "; ".join(f"{k}: {v}" for k, v in self.doubled_sample.items())
            out.append(f"{self.doubled} events took effect more than once ({sample})")
        if self.incomplete:
            sample = "; ".join(f"{k}: {v}" for k, v in self.incomplete_sample.items())
            out.append(f"{self.incomplete} logged events lack part of their effect ({sample})")
        if self.gave_up:
            sample = "; ".join(f"{k}: {v}" for k, v in self.gave_up_sample.items())
            out.append(
                f"{self.gave_up} calls were never acknowledged: answers a PBX does not retry "
                f"(a 500 instead of 503 + Retry-After), or still refused at the deadline "
                f"({sample})"
            )
        return out


def record(figures: Figures) -> None:
    """Print the figures and append them to the results file the docs table is made from."""
    print("\n" + figures.summary())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(asdict(figures)) + "\n")


Fault = Callable[[], Awaitable[None]]


async def run_scenario(
    name: str,
    *,
    port: int,
    db: Database,
    fault: Fault,
    fault_at: float,
    seconds: float,
    rate: float = 50,
    patience: float = 30,
) -> Figures:
    """Stream webhooks for `seconds` at `rate`; `fault_at` seconds in, run `fault` (it returns
    when the fault is over: the server is back, the process is killed). Then wait, bounded,
    for everything acknowledged to be processed, and audit the database."""
    loop = asyncio.get_running_loop()
    prefix = f"chaos-{name}-{os.getpid()}"
    connector = aiohttp.TCPConnector(limit=100)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=5)
    ) as http:
        pbx = Pbx(http, port, prefix, rate)
        sending = asyncio.create_task(pbx.stream(seconds, patience))
        recovery: asyncio.Task[tuple[set[str], float | None]] | None = None
        try:
            await asyncio.sleep(fault_at)
            await fault()
            fault_end = loop.time()
            # Recovery: until what was acknowledged before the fault ended is processed.
            recovery = asyncio.create_task(wait_processed(db, prefix, pbx.acknowledged(), cap=90))
            await sending
            acked = pbx.acknowledged()
            seen, _ = await wait_processed(db, prefix, acked)
            _, recovered_at = await recovery
        finally:
            for task in (sending, recovery):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
    doubles, missing = await effects(db, pbx.calls, prefix)
    lost = sorted(acked - seen)
    gave_up = {c.call_id: c.gave_up for c in pbx.calls.values() if c.gave_up is not None}
    figures = Figures(
        scenario=name,
        sent=len(pbx.calls),
        acknowledged=len(acked),
        processed=len(acked & seen),
        lost=len(lost),
        doubled=len(doubles),
        incomplete=len(missing),
        recovery_s=None if recovered_at is None else round(max(0.0, recovered_at - fault_end), 1),
        gave_up=len(gave_up),
        answers=dict(Counter(a for c in pbx.calls.values() for a in c.answers)),
        lost_sample=lost[:5],
        doubled_sample=dict(list(doubles.items())[:5]),
        incomplete_sample=dict(list(missing.items())[:5]),
        gave_up_sample=dict(list(gave_up.items())[:5]),
    )
    record(figures)
    return figures


def details(figures: Figures, fleet: Fleet) -> str:
    return "\n".join([figures.summary(), *figures.problems(), fleet.tails()])


def check_promise(figures: Figures, fleet: Fleet) -> None:
    assert not figures.problems(), details(figures, fleet)
    assert figures.acknowledged > 0, details(figures, fleet)
