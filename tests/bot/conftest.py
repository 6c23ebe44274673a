"""A running service with the rep bot, talking to the loopback fake Bot API.

`World` drives it like reps would: it presses buttons and sends messages through the fake, then
waits for the bot's answer. Time is a shifted clock the test moves forward; nothing sleeps
longer than the bot's short polling intervals.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from bot.clock import ShiftedClock
from bot.component import BotComponent, bot_component
from channels.phone.signatures import GENERIC_HEADER, sign_generic
from crm.dto import RepView
from matching.event import Channel, InboundEvent
from tests.conftest import make_event
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "123456:TEST-TOKEN"
PHONE_SECRET = "phone-secret"  # phone.webhook_secret of worlds with the phone channel
JsonDict = dict[str, Any]


def buttons(message: JsonDict) -> list[tuple[str, str]]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return [(b["text"], b.get("callback_data", "")) for row in rows for b in row]


def button(message: JsonDict, label: str) -> str:
    """The callback data of the button whose label starts with `label`."""
    found = [data for text, data in buttons(message) if text.startswith(label)]
    if not found:
        raise AssertionError(f"no button {label!r}; have {[t for t, _ in buttons(message)]}")
    return found[0]


def email(n: int, who: str = "Kunde", subject: str = "Anfrage", **fields: Any) -> InboundEvent:
    """E-mail number `n` from a new person (override any field)."""
    base: dict[str, Any] = {
        "channel": Channel.EMAIL,
        "external_id": f"<{who.lower()}-{n}@example.com>",
        "emails": (f"{who.lower()}{n}@example.com",),
        "display_name": f"{who} {n}",
        "subject": f"{subject} {n}",
        "text": f"Bitte um ein Angebot ({n}).",
    }
    return make_event(**{**base, **fields})


def answered_call(n: int, **fields: Any) -> InboundEvent:
    """An answered incoming call from a new number."""
    base: dict[str, Any] = {
        "channel": Channel.CALL,
        "external_id": f"call-{n}",
        "phones": (f"+49 30 555 00{n}",),
        "meta": {"call_id": f"c{n}", "stage": "answered", "disposition": "answered"},
    }
    return make_event(**{**base, **fields})


def entity_text(text: str, entity: JsonDict) -> str:
    """The text an entity covers (Telegram counts offsets in UTF-16 code units)."""
    raw = text.encode("utf-16-le")
    start, end = entity["offset"] * 2, (entity["offset"] + entity["length"]) * 2
    return raw[start:end].decode("utf-16-le")


def telegram_settings(tg: FakeTelegram, **extra: Any) -> dict[str, Any]:
    return {
        "token": TOKEN,
        "base_url": tg.base_url,
        "polling_timeout": 1,
        "outbox_poll_interval": 0.02,
        "duties_interval": 0.02,
        "digest_at": "off",  # a morning digest would land amid every test's cards
        **extra,
    }


@dataclass
class World:
    service: Any
    bot: BotComponent
    tg: FakeTelegram
    clock: ShiftedClock
    _seen: dict[int, int] = field(default_factory=dict)

    @property
    def crm(self) -> Any:
        return self.service.crm

    async def rep(self, name: str, telegram_id: int | None, role: str = "rep") -> RepView:
        rep: RepView = await self.crm.reps.add(name, role=role, telegram_user_id=telegram_id)
        return rep

    async def new_messages(self, chat: int, count: int = 1, timeout: float = 20) -> list[JsonDict]:
        """The next `count` messages the bot sends to `chat` (after those already returned)."""
        start = self._seen.get(chat, 0)
        await self.tg.wait_for(
            "",  # any method: a photo (/stats) is a message too
            timeout=timeout,
            predicate=lambda c: (
                c.status == 200
                and c.method in ("sendMessage", "sendPhoto")
                and c.params.get("chat_id") == chat
            ),
            count=start + count,
        )
        sent = self.tg.sent_messages(chat)
        self._seen[chat] = start + count
        return sent[start : start + count]

    async def card(self, chat: int) -> JsonDict:
        return (await self.new_messages(chat))[0]

    def current(self, chat: int, message_id: int) -> JsonDict:
        """A snapshot of the message as it is now (later edits do not change it)."""
        return copy.deepcopy(self.tg.message(chat, message_id))

    async def press(self, user: int, message_id: int, data: str) -> JsonDict:
        """Press a button and wait for the bot's answer; returns answerCallbackQuery params."""
        update = self.tg.callback(user, message_id, data)
        query_id = update["callback_query"]["id"]
        calls = await self.tg.wait_for(
            "answerCallbackQuery",
            predicate=lambda c: str(c.params.get("callback_query_id")) == query_id,
        )
        return calls[0].params

    async def press_label(self, user: int, message_id: int, label: str) -> JsonDict:
        return await self.press(user, message_id, button(self.current(user, message_id), label))

    async def say(self, user: int, text: str, reply_to: int | None = None) -> JsonDict:
        """Send a message as `user` and return the bot's reply."""
        self.tg.user_message(user, text, reply_to_message_id=reply_to)
        return await self.card(user)

    async def reply(
        self, chat: int, to: str, channel: str, text: str, card: JsonDict | None = None
    ) -> str:
        """Press 💬 Reply on `card` (the next card `chat` gets when None), check the prompt
        names `to` and `channel`, type `text`: what the bot then tells the rep."""
        card = card or await self.card(chat)
        assert "💬 Reply" in [label for label, _ in buttons(card)], card["text"]
        await self.press_label(chat, card["message_id"], "💬 Reply")
        prompt = await self.card(chat)
        assert prompt["text"].startswith(f"Your message to {to} in {channel} (lead #")
        self.tg.user_message(chat, text)
        told: str = (await self.card(chat))["text"]
        return told

    async def wait_until(
        self, check: Callable[[], Awaitable[bool]], timeout: float = 5.0, step: float = 0.02
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await check():
            if loop.time() > deadline:
                raise AssertionError("condition not reached in time")
            await asyncio.sleep(step)

    def advance(self, **delta: float) -> None:
        self.clock.advance(timedelta(**delta))

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        """POST to the running service; the HTTP status."""
        url = f"http://127.0.0.1:{self.service.port}{path}"
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
            await r.read()
            return r.status

    async def missed_call(self, call_id: str, number: str, **fields: Any) -> None:
        """A missed incoming call, as the phone system reports it (signed generic webhook)."""
        doc = {"event": "call.missed", "call_id": call_id, "direction": "incoming",
               "from": number, "to": "+4989111222", **fields}  # fmt: skip
        body = json.dumps(doc).encode()
        signature = sign_generic(PHONE_SECRET, int(time.time()), body)
        headers = {"Content-Type": "application/json", GENERIC_HEADER: signature}
        assert await self.post("/hooks/calls", body, headers) == 202

    async def settle(self) -> None:
        """Every queued event processed and every card delivered."""
        await asyncio.wait_for(self.service.queue.join(), 5)

        async def delivered() -> bool:
            return bool(await self.crm.outbox.pending_count() == 0)

        await self.wait_until(delivered)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def world(
    tg: FakeTelegram, start_service: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[World]]:
    # `tg` first: it must outlive the service, which still talks to it while stopping.
    async def _make(extra: Sequence[Callable[[Any], Any]] = (), **sections: Any) -> World:
        """The service with the bot and the `extra` component factories (channels)."""
        clock = ShiftedClock()
        telegram = telegram_settings(tg, **sections.pop("telegram", {}))
        service = await start_service(
            components=[lambda s: bot_component(s, clock), *extra], telegram=telegram, **sections
        )
        bot = next(c for c in service.components if isinstance(c, BotComponent))
        await bot.wait_ready()
        return World(service, bot, tg, clock)

    return _make
