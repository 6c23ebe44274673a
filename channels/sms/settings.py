"""The SMS channel's config section (`[sms]`). The root's `leadbot.settings.Settings` holds it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr

TWILIO_API = "https://api.twilio.com"


class SmsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account_sid: str | None = None  # AC…; with auth_token it switches the channel on
    auth_token: SecretStr | None = None  # checks X-Twilio-Signature, authenticates replies
    from_number: str | None = None  # our Twilio number replies are sent from; none: no replies
    # Our numbers' regions, for senders who write their number without a country code.
    regions: dict[str, str] = {}
    # Where the incoming-message webhook is reached from Twilio (what it signs); default
    # http.public_url.
    public_url: str | None = None
    api_base_url: str = TWILIO_API  # Twilio's REST API; tests point it at a fake
    timeout: float = 10.0  # seconds to wait for Twilio when sending a reply
