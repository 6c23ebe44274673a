"""A local stand-in for the WhatsApp Cloud API's send endpoint over real HTTP: the same path,
bearer token and JSON body, answering 200 with `{messaging_product, contacts, messages}` or an
error with Meta's envelope `{"error": {message, type, code, error_data, fbtrace_id}}`."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.local_server import LocalServer


@dataclass
class SentWhatsApp:
    phone_number_id: str
    version: str
    authorization: str
    body: dict[str, Any]
    wamid: str


@dataclass
class FakeCloudApi(LocalServer):
    phone_number_id: str
    access_token: str
    sent: list[SentWhatsApp] = field(default_factory=list)
    requests: int = 0  # every POST that reached the endpoint, answered or not
    # recipient → (HTTP status, error code, message): Meta's refusals
    refuse: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    fail_status: int | None = None  # answer every send with this status and no JSON
    delay: float = 0.0  # seconds before answering (the message still counts as sent)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{version}/{phone_number_id}/messages", self._send)

    def _error(self, status: int, code: int, message: str, details: str = "") -> web.Response:
        error = {"message": message, "type": "OAuthException", "code": code,
                 "error_data": {"messaging_product": "whatsapp", "details": details or message},
                 "fbtrace_id": "A" + uuid.uuid4().hex[:20]}  # fmt: skip
        return web.json_response({"error": error}, status=status)

    async def _send(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        authorization = request.headers.get("Authorization", "")
        pnid = request.match_info["phone_number_id"]
        if authorization != f"Bearer {self.access_token}":
            return self._error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        if pnid != self.phone_number_id:
            return self._error(400, 100, "Unsupported post request.")
        body = await request.json()
        if self.fail_status is not None:
            return web.Response(status=self.fail_status, text="upstream trouble")
        recipient = body.get("to") or body.get("recipient")
        text = (body.get("text") or {}).get("body")
        if body.get("messaging_product") != "whatsapp" or body.get("type") != "text" or not text:
            return self._error(400, 100, "Invalid parameter")
        if not recipient:
            return self._error(400, 100, "The parameter to is required.")
        if recipient in self.refuse:
            status, code, message = self.refuse[recipient]
            return self._error(status, code, message)
        wamid = "wamid." + uuid.uuid4().hex.upper()
        self.sent.append(
            SentWhatsApp(pnid, request.match_info["version"], authorization, body, wamid)
        )
        if self.delay:  # sent, but the answer comes too late for the client
            await asyncio.sleep(self.delay)
        key = "wa_id" if "to" in body else "user_id"
        doc = {"messaging_product": "whatsapp",
               "contacts": [{"input": recipient, key: recipient}],
               "messages": [{"id": wamid}]}  # fmt: skip
        return web.json_response(doc)
