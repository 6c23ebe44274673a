"""Which components a full service runs, and what a component is to the service (`Service`
in leadbot.app builds them; this module imports nothing of leadbot.app)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from aiohttp import web
from redis.asyncio import Redis

from bot.component import BotHost, bot_component
from channels.mail.component import MailHost, mail_component
from channels.mail.smtp import SmtpHost, smtp_component
from channels.phone.component import PhoneServiceHost, phone_component
from channels.sms.routes import SmsHost, sms_component
from channels.webform.routes import FormsHost, forms_component
from channels.whatsapp.routes import WhatsAppHost, whatsapp_component
from console.component import ConsoleHost, console_component
from crm.changes import LocalFeed, RedisFeed
from leadbot.api.component import ApiHost, api_component
from leadbot.metrics import Metrics
from leadbot.settings import Settings


class Component(Protocol):
    """A channel, the bot, the API or the console: routes to mount, and work to start and
    stop."""

    def routes(self) -> list[web.AbstractRouteDef]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class ConfiguresApp(Protocol):
    """A component that also puts something on the aiohttp app (the console: templates)."""

    def configure(self, app: web.Application) -> None: ...


class ServiceHost(
    ApiHost,
    BotHost,
    ConsoleHost,
    MailHost,
    SmtpHost,
    PhoneServiceHost,
    FormsHost,
    WhatsAppHost,
    SmsHost,
    Protocol,
):
    """Everything the components ask of the service: each declares its own narrow host
    protocol; `leadbot.app.Service` is all of them at once."""

    @property
    def settings(self) -> Settings: ...

    @property
    def metrics(self) -> Metrics: ...  # the bot's card counters and the mail's registry


ComponentFactory = Callable[[ServiceHost], Component | None]

COMPONENTS: list[ComponentFactory] = [
    api_component,
    phone_component,
    whatsapp_component,
    sms_component,
    forms_component,
    mail_component,
    smtp_component,
    bot_component,
    console_component,
]


def change_feed(redis: Redis | None, stream: str) -> LocalFeed:
    """The change feed of a process: through Redis pub/sub when Redis is configured (serve and
    the workers are separate processes then), else in process."""
    # Named after the queue's stream: deployments sharing one Redis keep their feeds apart.
    return LocalFeed() if redis is None else RedisFeed(redis, channel=f"{stream}:changes")
