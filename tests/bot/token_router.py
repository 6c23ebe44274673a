"""One Bot API address for several fake bots: requests are forwarded by their token.

The service points both its bots (reps and customers) at `telegram.base_url`, as it would at
api.telegram.org; each `FakeTelegram` plays one bot, so each keeps its own chats and updates.
"""

from __future__ import annotations

from aiohttp import ClientSession, ClientTimeout, web

from tests.fakes.local_server import LocalServer
from tests.fakes.telegram_api import FakeTelegram


class TokenRouter(LocalServer):
    def __init__(self, bots: dict[str, FakeTelegram]) -> None:
        self.bots = bots
        self._session: ClientSession | None = None

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._forward)

    async def start(self) -> None:
        self._session = ClientSession(timeout=ClientTimeout(total=60))
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        token, method = request.match_info["token"], request.match_info["method"]
        fake = self.bots.get(token)
        if fake is None or self._session is None:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        headers = {k: v for k, v in request.headers.items() if k.lower() == "content-type"}
        async with self._session.request(
            request.method,
            f"{fake.base_url}{token}/{method}",
            data=await request.read(),
            headers=headers,
        ) as answer:
            return web.Response(
                body=await answer.read(), status=answer.status, content_type="application/json"
            )
