"""The WhatsApp channel's config section (`[whatsapp]`).
The root's `leadbot.settings.Settings` holds it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr


class WhatsAppSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    verify_token: SecretStr | None = None
    app_secret: SecretStr | None = None
    queue: tuple[int, ...] = ()  # rep ids for round robin of new leads from WhatsApp
