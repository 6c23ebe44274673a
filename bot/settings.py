"""The rep bot's config section (`[telegram]`).
The root's `leadbot.settings.Settings` holds it."""

from __future__ import annotations

from datetime import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class TelegramSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = None
    # Used to print invite links (t.me/<bot_username>?start=<code>).
    bot_username: str | None = None
    # Bot API server; tests point this at a local fake.
    base_url: str = "https://api.telegram.org/bot"
    base_file_url: str = "https://api.telegram.org/file/bot"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_path: str = "/hooks/telegram"
    webhook_secret: SecretStr | None = None
    admins: tuple[int, ...] = ()
    # A second, customer-facing bot; empty: customers write to the rep bot.
    customer_token: SecretStr | None = None
    ask_phone: bool = True
    send_retries: int = Field(8, ge=1)
    # Where Telegram posts updates in webhook mode; default: http.public_url + webhook_path.
    webhook_url: str | None = None
    polling_timeout: int = Field(25, ge=0, le=50)  # long-poll seconds per getUpdates
    outbox_poll_interval: float = Field(0.5, gt=0)  # how often the outbox is looked at
    duties_interval: float = Field(15.0, gt=0)  # reminders and escalation checks
    max_backoff: float = Field(300.0, gt=0)  # longest wait between two failed sends
    escalation_max: int = Field(3, ge=0)  # how often one untaken lead moves on
    junk_reasons: tuple[str, ...] = ("Spam", "Wrong number", "Duplicate", "Not interested")
    # Local time (crm.timezone) of each rep's morning digest, "HH:MM"; "off": no digest.
    digest_at: time | None = time(8, 30)

    @field_validator("digest_at", mode="before")
    @classmethod
    def _digest_off(cls, value: object) -> object:
        return None if isinstance(value, str) and value.strip().lower() in ("", "off") else value
