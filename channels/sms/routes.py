"""`POST /hooks/twilio/sms`: Twilio's incoming-message webhook, and the channel as a service
component (which also gives the bot its SMS reply sender).

- The X-Twilio-Signature over the public URL and the form must hold, else 403 JSON and nothing
  happens; a form we cannot read, or one that is not an incoming SMS, is 400 JSON.
- Once the event is queued (intake is exactly-once by MessageSid, so Twilio's redelivery is a
  duplicate) the answer is empty TwiML: no automatic reply goes to the customer.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Protocol

from aiohttp import web
from multidict import MultiDict

from channels.sms.message import SmsPayloadError, sms_event
from channels.sms.sender import TwilioSms
from channels.sms.settings import SmsSettings
from crm.config import ConfigError
from crm.replies import ReplySenders
from httpkit import BadInput, SignatureError, json_error, read_form
from httpkit.twilio import SETTINGS_HEADER, TWILIO_HEADER, algorithm_of, verify_twilio
from matching.event import Channel, InboundEvent
from matching.text import clean_text

log = logging.getLogger(__name__)

PATH = "/hooks/twilio/sms"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM = "application/x-www-form-urlencoded"


class _Http(Protocol):
    @property
    def public_url(self) -> str: ...


class SmsHostSettings(Protocol):
    @property
    def sms(self) -> SmsSettings: ...

    @property
    def http(self) -> _Http: ...


class SmsHost(Protocol):
    """What the SMS channel needs from the process that runs it."""

    @property
    def settings(self) -> SmsHostSettings: ...

    # Where the channel puts its reply sender for the bot.
    @property
    def reply_senders(self) -> ReplySenders: ...

    async def submit(self, event: InboundEvent) -> None: ...


class SmsComponent:
    def __init__(self, service: SmsHost, cfg: SmsSettings, auth_token: str) -> None:
        self.service = service
        self.cfg = cfg
        self.auth_token = auth_token
        prefix = cfg.public_url or service.settings.http.public_url
        self.public_prefix = prefix.rstrip("/")

    def routes(self) -> list[web.AbstractRouteDef]:
        return [web.post(PATH, self.receive)]

    async def start(self) -> None:
        """Nothing to start: Twilio calls us, replies open their own connection."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def receive(self, request: web.Request) -> web.StreamResponse:
        if request.content_type != FORM:
            return json_error(400, "bad_request", "Twilio sends form-encoded bodies")
        try:
            form = await read_form(request)
        except BadInput as err:
            return json_error(err.status, "bad_request", err.detail)
        params = MultiDict((k, str(v)) for k, v in form.items())
        try:
            verify_twilio(
                self.auth_token,
                self.public_prefix + request.raw_path,
                params,
                request.headers.get(TWILIO_HEADER),
                algorithm=algorithm_of(request.headers.get(SETTINGS_HEADER)),
            )
        except SignatureError as err:
            # Logged and counted with every refusal (leadbot.refusals); the URL it was checked
            # against shows a wrong sms.public_url / http.public_url at a glance.
            checked = self.public_prefix + request.raw_path
            return json_error(403, "bad_signature", f"{err.reason}; checked against {checked}")
        # Cleaned after the signature check, which covers the values as sent.
        clean = {clean_text(k): clean_text(v) for k, v in params.items()}
        try:
            event = sms_event(clean, datetime.now(UTC), self.cfg.regions)
        except SmsPayloadError as err:
            return json_error(400, "bad_request", err.reason)
        await self.service.submit(event)
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")


def sms_component(service: SmsHost) -> SmsComponent | None:
    """The webhook (and, with `from_number`, the reply sender) when `[sms]` names an account;
    None when it names nothing."""
    cfg = service.settings.sms
    if cfg.account_sid is None and cfg.auth_token is None:
        return None
    token = cfg.auth_token.get_secret_value() if cfg.auth_token else ""
    if not cfg.account_sid or not token:
        missing = "sms.auth_token" if cfg.account_sid else "sms.account_sid"
        raise ConfigError(f"config error: {missing}: needed for Twilio SMS")
    if cfg.from_number:
        service.reply_senders[Channel.SMS.value] = TwilioSms(
            base_url=cfg.api_base_url,
            account_sid=cfg.account_sid,
            auth_token=token,
            from_number=cfg.from_number,
            timeout=cfg.timeout,
        )
    return SmsComponent(service, cfg, token)
