"""A local stand-in for Twilio's Messages REST API over real HTTP: the same path, basic auth
and form body, answering 201 with a message resource or a 4xx with Twilio's error document."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.local_server import LocalServer


@dataclass
class SentSms:
    account: str
    authorization: str
    form: dict[str, str]
    sid: str


@dataclass
class FakeTwilioRest(LocalServer):
    account_sid: str
    auth_token: str
    sent: list[SentSms] = field(default_factory=list)
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)  # To → (code, message)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create)

    def _error(self, status: int, code: int, message: str) -> web.Response:
        doc = {"code": code, "message": message, "status": status,
               "more_info": f"https://www.twilio.com/docs/errors/{code}"}  # fmt: skip
        return web.json_response(doc, status=status)

    async def _create(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        authorization = request.headers.get("Authorization", "")
        if account != self.account_sid or authorization != f"Basic {expected}":
            return self._error(401, 20003, "Authenticate")
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not form.get("To") or not form.get("From") or not form.get("Body"):
            return self._error(400, 21604, "A 'To', 'From' and 'Body' parameter is required.")
        if form["To"] in self.refuse:
            code, message = self.refuse[form["To"]]
            return self._error(400, code, message)
        sid = "SM" + uuid.uuid4().hex
        self.sent.append(SentSms(account, authorization, form, sid))
        doc = {"sid": sid, "account_sid": account, "to": form["To"], "from": form["From"],
               "body": form["Body"], "status": "queued", "direction": "outbound-api",
               "api_version": "2010-04-01", "error_code": None, "error_message": None}  # fmt: skip
        return web.json_response(doc, status=201)
