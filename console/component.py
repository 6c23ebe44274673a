"""The web console as a service component: its routes under /app/, templates and static files."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib.resources import files
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web

from console import board, create, pages, records
from console.settings import ConsoleSettings
from console.web import CONSOLE, JINJA, PREFIX, ConsoleState
from crm.facade import Crm

STATIC_FILES = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "board.js": "text/javascript",
    "records.js": "text/javascript",
    "create.js": "text/javascript",  # the /app/new/* forms
}
# Files are named with a version query (`?v=`), so browsers may keep them a day.
STATIC_MAX_AGE = 86400


class _Http(Protocol):
    @property
    def public_url(self) -> str: ...


class _Telegram(Protocol):
    @property
    def bot_username(self) -> str | None: ...


class ConsoleSettingsHost(Protocol):
    @property
    def console(self) -> ConsoleSettings: ...

    @property
    def http(self) -> _Http: ...

    @property
    def telegram(self) -> _Telegram: ...


class ConsoleHost(Protocol):
    """What the console needs from the process that runs it (`leadbot.app.Service`)."""

    @property
    def settings(self) -> ConsoleSettingsHost: ...

    @property
    def crm(self) -> Crm: ...

    @property
    def http(self) -> bool: ...

    def effective_settings(self) -> dict[str, Any]: ...


class ConsoleComponent:
    def __init__(
        self,
        crm: Crm,
        public_url: str,
        bot_username: str | None = None,
        effective_settings: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        static = files("console") / "static"
        self.static = {name: static.joinpath(name).read_bytes() for name in STATIC_FILES}
        version = hashlib.sha256(b"".join(self.static.values())).hexdigest()[:12]
        self.state = ConsoleState(
            crm=crm,
            public_url=public_url,
            secure_cookies=public_url.startswith("https://"),
            static_version=version,
            bot_username=bot_username,
            effective_settings=effective_settings,
        )

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.get(f"{PREFIX}/static/{{name}}", self._static, allow_head=False),
            *pages.routes(),
            *records.routes(),
            *create.routes(),
        ]

    def configure(self, app: web.Application) -> None:
        """Templates and the handlers' shared state on the service's app."""
        app[CONSOLE] = self.state
        board.setup(app)
        env = aiohttp_jinja2.setup(
            app,
            loader=jinja2.PackageLoader("console", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            app_key=JINJA,
        )
        tz = ZoneInfo(self.state.crm.config.timezone)
        # `{{ lead.created_at|when }}`: the team's local time, as the bot shows it.
        env.filters["when"] = lambda at: at.astimezone(tz).strftime("%Y-%m-%d %H:%M")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = self.static.get(name)
        if body is None:
            raise web.HTTPNotFound(reason=f"no static file {name!r}")
        return web.Response(
            body=body,
            content_type=STATIC_FILES[name],
            charset="utf-8",
            headers={"Cache-Control": f"public, max-age={STATIC_MAX_AGE}"},
        )

    async def start(self) -> None:
        """Nothing to start: the console only answers requests."""

    async def stop(self) -> None:
        """Nothing to stop."""


def console_component(service: ConsoleHost) -> ConsoleComponent | None:
    """The console, or None when turned off or in a process without HTTP (`leadbot worker`)."""
    if not service.settings.console.enabled or not service.http:
        return None
    settings = service.settings
    return ConsoleComponent(
        service.crm,
        settings.http.public_url,
        settings.telegram.bot_username,
        service.effective_settings,
    )
