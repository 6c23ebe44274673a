"""`/hooks/whatsapp`: the WhatsApp Cloud API webhook (subscription check and messages).

- GET: Meta's subscription check → 200 with `hub.challenge` as text, else 403.
- POST: the `X-Hub-Signature-256` HMAC over the raw body must hold, else 401 and nothing
  happens. Once it holds the answer is always a quick 200: the messages are queued (intake is
  idempotent by message id, so Meta's redeliveries are no-ops), and a message (or a whole
  signed body) we cannot read is logged with the reason and counted
  (`leadbot_inbound_rejected_total{channel="whatsapp"}`), not refused: Meta retries a whole
  delivery for days on any other answer, and the unreadable part would never become readable
  while the good messages beside it would be delayed.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

from aiohttp import web

from channels.whatsapp.sender import CloudApiReplies
from channels.whatsapp.settings import WhatsAppSettings
from channels.whatsapp.webhook import (
    SIGNATURE_HEADER,
    WhatsAppAuthError,
    WhatsAppPayloadError,
    parse_webhook,
    verify_challenge,
    verify_signature,
)
from crm.config import ConfigError
from crm.replies import ReplySenders
from httpkit import json_error
from matching.event import Channel, InboundEvent

log = logging.getLogger(__name__)

PATH = "/hooks/whatsapp"


class WhatsAppHostSettings(Protocol):
    @property
    def whatsapp(self) -> WhatsAppSettings: ...


class WhatsAppHost(Protocol):
    """What the WhatsApp channel needs from the process that runs it."""

    @property
    def settings(self) -> WhatsAppHostSettings: ...

    # Where the channel puts its reply sender for the bot.
    @property
    def reply_senders(self) -> ReplySenders: ...

    async def submit(self, event: InboundEvent) -> None: ...

    def count_rejected(self, channel: Channel, n: int = 1) -> None:
        """Count input a channel acknowledged but could not turn into events."""
        ...


class WhatsAppComponent:
    def __init__(
        self, service: WhatsAppHost, *, verify_token: str, app_secret: str, queue: tuple[int, ...]
    ) -> None:
        self.service = service
        self.verify_token = verify_token
        self.app_secret = app_secret
        self.queue = list(queue)

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.get(PATH, self.verify, allow_head=False), web.post(PATH, self.receive)]

    async def start(self) -> None:
        """Nothing to start: Meta calls us."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def verify(self, request: web.Request) -> web.StreamResponse:
        try:
            challenge = verify_challenge(request.query, self.verify_token)
        except WhatsAppAuthError as err:
            log.warning("WhatsApp subscription check refused: %s", err.reason)
            return json_error(403, "verification_failed", err.reason)
        return web.Response(text=challenge, content_type="text/plain")

    async def receive(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            verify_signature(self.app_secret, raw, request.headers.get(SIGNATURE_HEADER))
        except WhatsAppAuthError as err:
            log.warning("WhatsApp webhook refused from %s: %s", request.remote, err.reason)
            return json_error(401, "bad_signature", err.reason)
        try:
            batch = parse_webhook(raw)
        except WhatsAppPayloadError as err:
            log.warning("WhatsApp webhook: signed body not understood, dropped: %s", err.reason)
            self.service.count_rejected(Channel.WHATSAPP)
            return web.json_response({"status": "ignored", "messages": 0, "rejected": 1})
        for bad in batch.rejected:
            log.warning(
                "WhatsApp webhook: %s (message %s) dropped: %s",
                bad.where,
                bad.message_id or "without id",
                bad.reason,
            )
        if batch.rejected:
            self.service.count_rejected(Channel.WHATSAPP, len(batch.rejected))
        for event in batch.events:
            await self.service.submit(replace(event, meta={**event.meta, "queue": self.queue}))
        return web.json_response(
            {"status": "received", "messages": len(batch.events), "rejected": len(batch.rejected)}
        )


def whatsapp_component(service: WhatsAppHost) -> WhatsAppComponent | None:
    """The webhook when `[whatsapp]` has both secrets (and, with `phone_number_id` and
    `access_token`, the reply sender); None when neither secret is set."""
    cfg = service.settings.whatsapp
    if cfg.verify_token is None and cfg.app_secret is None:
        return None
    token = cfg.verify_token.get_secret_value() if cfg.verify_token else ""
    secret = cfg.app_secret.get_secret_value() if cfg.app_secret else ""
    if not token or not secret:
        missing = "whatsapp.app_secret" if token else "whatsapp.verify_token"
        raise ConfigError(f"config error: {missing}: needed for the WhatsApp webhook")
    if cfg.phone_number_id or cfg.access_token:
        access = cfg.access_token.get_secret_value() if cfg.access_token else ""
        if not cfg.phone_number_id or not access:
            missing = "whatsapp.access_token" if cfg.phone_number_id else "whatsapp.phone_number_id"
            raise ConfigError(f"config error: {missing}: needed for WhatsApp replies")
        service.reply_senders[Channel.WHATSAPP.value] = CloudApiReplies(
            base_url=cfg.api_base_url,
            api_version=cfg.api_version,
            phone_number_id=cfg.phone_number_id,
            access_token=access,
            timeout=cfg.timeout,
        )
    return WhatsAppComponent(service, verify_token=token, app_secret=secret, queue=cfg.queue)
