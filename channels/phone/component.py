"""The phone channel as a service component: its routes, and the rep directory kept fresh.

Routes (each answers 404 with a reason when its own secret is not set):
    POST /hooks/calls                      generic JSON webhook (phone.webhook_secret)
    GET  /hooks/calls/lookup?number=…      caller lookup (phone.lookup_token)
    POST /hooks/twilio/voice, …/status     Twilio voice / status callbacks (phone.twilio_auth_token)
    POST /hooks/twilio/recording           Twilio recording status callbacks (also at …/status)
    GET|POST /rest/<user>/<token>/telephony.externalcall.*[.json]   Bitrix24 (phone.bitrix_token)
    GET|POST /rest/<user>/<token>/batch[.json]                      … several of them at once
    GET|POST /rest/<user>/<token>/crm.*, user.get, telephony.externalLine.*, …  the CRM
    POST /rest/api/<user>/<token>/<method>                          the same, REST 3.0's path
    GET  /recordings/<name>                recordings sent to attachRecord as files
                                           (phone.recordings_dir)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from channels.phone import recordings
from channels.phone.bitrix_service import BitrixTelephony
from channels.phone.context import GENERIC_KIND, PhoneContext, PhoneHost
from channels.phone.lookup import lookup
from channels.phone.recordings import RECORDINGS_PATH
from channels.phone.webhooks import (
    TWILIO_RECORDING_PATH,
    TWILIO_STATUS_PATH,
    TWILIO_VOICE_PATH,
    generic_hook,
    twilio_recording,
    twilio_status,
    twilio_voice,
)
from crm.services.callers import CacheSettings
from crm.supervisor import TaskHost

# Every method under a webhook path: an unknown one gets Bitrix24's own error body
# (`bitrix_params.method_not_found`), a user that is not a number Bitrix24's refusal of the
# credentials, as Bitrix24 answers them. Method names are matched case-insensitively.
BITRIX_PATH = r"/rest/{user}/{token}/{method}"
# REST 3.0's path: the same methods, errors in its `{"error": {"code", "message"}}` shape.
BITRIX_V3_PATH = r"/rest/api/{user}/{token}/{method}"
BITRIX_ELSE_PATH = r"/rest/{tail:.*}"


Handler = Callable[[PhoneContext, web.Request], Awaitable[web.StreamResponse]]


class PhoneComponent:
    def __init__(self, ctx: PhoneContext, tasks: TaskHost) -> None:
        self.ctx = ctx
        self.tasks = tasks
        ctx.host.converters[GENERIC_KIND] = ctx.convert_generic
        self.bitrix = BitrixTelephony(ctx)
        self._stop = asyncio.Event()
        self._refresher: asyncio.Task[None] | None = None

    def _bind(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        # A partial, not a wrapping coroutine: one coroutine less on every request.
        return functools.partial(handler, self.ctx)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [
            web.post("/hooks/calls", self._bind(generic_hook)),
            web.get("/hooks/calls/lookup", self._bind(lookup)),
            web.post(TWILIO_VOICE_PATH, self._bind(twilio_voice)),
            web.get(TWILIO_VOICE_PATH, self._bind(twilio_voice), allow_head=False),
            web.post(TWILIO_STATUS_PATH, self._bind(twilio_status)),
            web.post(TWILIO_RECORDING_PATH, self._bind(twilio_recording)),
            web.get(f"{RECORDINGS_PATH}/{{name}}", self._bind(recordings.serve)),
            web.get(BITRIX_PATH, self.bitrix.handle, allow_head=False),
            web.post(BITRIX_PATH, self.bitrix.handle),
            web.post(BITRIX_V3_PATH, self.bitrix.handle_v3),
            # Any other path under /rest/ (no method, a method with a slash): Bitrix24's body.
            web.route("*", BITRIX_ELSE_PATH, self.bitrix.not_found),
        ]

    async def start(self) -> None:
        # A first copy of the directory before requests arrive; then kept fresh.
        with contextlib.suppress(Exception):
            await self.ctx.refresh_directory()
        self._stop.clear()
        stop = self._stop
        self._refresher = self.tasks.spawn(
            "phone.directory", lambda: self.ctx.keep_directory_fresh(stop), stop
        )

    async def stop(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            await self._refresher
            self._refresher = None


class PhoneServiceHost(PhoneHost, TaskHost, Protocol):
    """The service, as the phone channel sees it."""


def phone_component(host: PhoneServiceHost) -> PhoneComponent | None:
    """Factory for `leadbot.wiring.COMPONENTS`: None when no phone format is configured."""
    phone = host.settings.phone
    if not any(
        (phone.webhook_secret, phone.twilio_auth_token, phone.bitrix_token, phone.lookup_token)
    ):
        return None
    crm = host.crm
    crm.callers.configure_cache(
        CacheSettings(
            phone.lookup_cache_size, phone.lookup_cache_ttl, phone.lookup_cache_negative_ttl
        )
        if phone.lookup_cache
        else None
    )
    return PhoneComponent(
        PhoneContext(host=host, settings=phone, telephony=crm.telephony, callers=crm.callers),
        host,
    )
