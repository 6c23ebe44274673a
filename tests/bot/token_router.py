"""One Bot API address for several fake bots: requests are forwarded by their token.

The service points both its bots (reps and customers) at `telegram.base_url`, as it would at
api.telegram.org; each `FakeTelegram` plays one bot, so each keeps its own chats and updates.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import ClientSession, ClientTimeout, web

from tests.fakes.telegram_api import FakeTelegram


class TokenRouter:
    def __init__(self, bots: dict[str, FakeTelegram]) -> None:
        self.bots = bots
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    async def __aenter__(self) -> Self:
        self._session = ClientSession(timeout=ClientTimeout(total=60))
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._forward)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
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
