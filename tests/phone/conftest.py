"""A running service with the phone channel on, and a client that speaks its formats over
real HTTP: signed generic webhooks, Twilio requests signed with twilio's own RequestValidator,
Bitrix24 REST calls."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from channels.phone.component import phone_component
from channels.phone.signatures import sign_generic
from crm.models import Activity, Lead

SECRET = "whsec-test-secret"
TWILIO_TOKEN = "twilio-auth-token-test"
BITRIX_TOKEN = "b24secret"
LOOKUP_TOKEN = "lookup-secret"
PUBLIC = "https://crm.example.com"
LINE = "+4989111222"
FALLBACK = "+4989000000"

PHONE_SETTINGS: dict[str, Any] = {
    "webhook_secret": SECRET,
    "twilio_auth_token": TWILIO_TOKEN,
    "twilio_public_url": PUBLIC,
    "twilio_fallback_number": FALLBACK,
    "bitrix_token": BITRIX_TOKEN,
    "lookup_token": LOOKUP_TOKEN,
    "region": "DE",
    "internal_extensions": ["7777"],
    "our_numbers": [LINE],
}


@dataclass
class Reply:
    status: int
    text: str
    content_type: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class PhoneClient:
    service: Any
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.service.port}"

    async def _send(self, method: str, path: str, **kwargs: Any) -> Reply:
        async with self.http.request(method, self.base + path, **kwargs) as r:
            return Reply(r.status, await r.text(), r.content_type)

    async def post_generic(
        self, body: bytes, *, secret: str = SECRET, timestamp: int | None = None
    ) -> Reply:
        header = sign_generic(secret, int(time.time()) if timestamp is None else timestamp, body)
        return await self._send(
            "POST",
            "/hooks/calls",
            data=body,
            headers={"Content-Type": "application/json", "X-Leadbot-Signature": header},
        )

    async def call_event(
        self, call_id: str, event: str, number: str | None, **fields: Any
    ) -> Reply:
        """One generic webhook event; incoming unless `direction` says otherwise."""
        doc: dict[str, Any] = {
            "event": event,
            "call_id": call_id,
            "direction": "incoming",
            "line": LINE,
            **fields,
        }
        if doc["direction"] == "incoming":
            doc.setdefault("from", number)
            doc.setdefault("to", LINE)
        else:
            doc.setdefault("from", LINE)
            doc.setdefault("to", number)
        return await self.post_generic(json.dumps(doc).encode())

    async def missed_call(self, call_id: str, number: str, **fields: Any) -> None:
        for event in ("call.ringing", "call.missed"):
            reply = await self.call_event(call_id, event, number, **fields)
            assert reply.status in (200, 202), reply.text

    async def answered_call(self, call_id: str, number: str, duration: int = 30) -> None:
        await self.call_event(call_id, "call.ringing", number)
        await self.call_event(call_id, "call.answered", number)
        await self.call_event(call_id, "call.ended", number, duration=duration)

    async def twilio(
        self,
        path: str,
        form: dict[str, str],
        *,
        token: str = TWILIO_TOKEN,
        public: str = PUBLIC,
        signature: str | None = None,
    ) -> Reply:
        """POST a form signed the way Twilio signs it, over the public URL."""
        if signature is None:
            signature = RequestValidator(token).compute_signature(public + path, form)
        return await self._send("POST", path, data=form, headers={"X-Twilio-Signature": signature})

    async def bitrix(
        self,
        method: str,
        *,
        query: str | None = None,
        json_body: dict[str, Any] | None = None,
        token: str = BITRIX_TOKEN,
        user: str = "1",
    ) -> Reply:
        """GET with a (bracketed, already encoded) query, or POST JSON, like Bitrix24 clients."""
        path = f"/rest/{user}/{token}/{method}"
        if json_body is not None:
            return await self._send("POST", path, json=json_body)
        return await self._send("GET", f"{path}?{query or ''}")

    async def lookup(self, number: str, *, token: str | None = LOOKUP_TOKEN) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self._send(
            "GET", "/hooks/calls/lookup", params={"number": number}, headers=headers
        )

    async def settle(self) -> None:
        """Wait until intake has processed everything queued so far."""
        await self.service.queue.join()

    async def leads(self) -> list[Lead]:
        async with self.service.db.transaction() as s:
            return list(await s.scalars(select(Lead).order_by(Lead.id)))

    async def activities(self, kind: str) -> list[Activity]:
        async with self.service.db.transaction() as s:
            query = select(Activity).where(Activity.kind == kind).order_by(Activity.id)
            return list(await s.scalars(query))


StartPhone = Callable[..., Awaitable[PhoneClient]]


@pytest.fixture
async def start_phone(start_service: Any) -> AsyncIterator[StartPhone]:
    """Start the service with the phone channel (settings overridable) and a client for it."""
    sessions: list[aiohttp.ClientSession] = []

    async def _start(**phone: Any) -> PhoneClient:
        service = await start_service(
            components=[phone_component], phone={**PHONE_SETTINGS, **phone}
        )
        http = aiohttp.ClientSession()
        sessions.append(http)
        return PhoneClient(service, http)

    yield _start
    for http in sessions:
        await http.close()


@pytest.fixture
async def phone(start_phone: StartPhone) -> PhoneClient:
    return await start_phone()


async def add_rep(client: PhoneClient, name: str, **fields: Any) -> int:
    """A rep the running phone channel knows at once (its directory is refreshed)."""
    rep = await client.service.crm.reps.add(name, **fields)
    for component in client.service.components:
        ctx = getattr(component, "ctx", None)
        if ctx is not None:
            await ctx.refresh_directory()
    return int(rep.id)
