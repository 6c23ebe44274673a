"""The WhatsApp channel's config section (`[whatsapp]`).
The root's `leadbot.settings.Settings` holds it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

GRAPH_API = "https://graph.facebook.com"


class WhatsAppSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    verify_token: SecretStr | None = None
    app_secret: SecretStr | None = None
    queue: tuple[int, ...] = ()  # rep ids for round robin of new leads from WhatsApp
    # Replies (the Cloud API's send endpoint); both set: reps can answer from the card.
    phone_number_id: str | None = None  # our business number's id, not the number itself
    access_token: SecretStr | None = None  # a system user's token with whatsapp_business_messaging
    api_version: str = "v21.0"
    api_base_url: str = GRAPH_API  # tests point it at a local fake
    timeout: float = Field(10.0, gt=0)  # seconds to wait for the Cloud API when sending
