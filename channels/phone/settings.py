"""The phone channel's config section (`[phone]`).
The root's `leadbot.settings.Settings` holds it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from matching.normalize import is_region


class PhoneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Shared secret of the generic JSON webhook (X-Leadbot-Signature).
    webhook_secret: SecretStr | None = None
    twilio_auth_token: SecretStr | None = None
    # Public URL prefix Twilio calls (behind a reverse proxy it differs from the bind address).
    twilio_public_url: str | None = None
    twilio_dial_responsible: bool = True
    twilio_fallback_number: str | None = None
    # Bitrix24-compatible REST: /rest/<user>/<token>/<method>.
    bitrix_token: SecretStr | None = None
    # Bearer token of GET /hooks/calls/lookup.
    lookup_token: SecretStr | None = None
    # The lookup's answers kept in memory, cleared by the change feed (docs/performance.md):
    # at most this many, none older than lookup_cache_ttl seconds (lookup_cache_negative_ttl
    # for unknown numbers). False: every lookup reads the database.
    lookup_cache: bool = True
    lookup_cache_size: int = Field(10_000, ge=1)
    lookup_cache_ttl: float = Field(30.0, gt=0)
    lookup_cache_negative_ttl: float = Field(5.0, gt=0)
    region: str | None = None
    # The country callers of a line dial from, by the line as the phone system names it (its
    # number, or a Bitrix24 LINE_NUMBER id): {"+4315130000" = "AT"}. A line not listed uses
    # the country of its own number, else `region`.
    line_regions: dict[str, str] = {}
    internal_extensions: tuple[str, ...] = ()
    our_numbers: tuple[str, ...] = ()
    # Where recordings sent as files (Bitrix24 attachRecord FILE_CONTENT) are kept; served at
    # http.public_url + /recordings/<random name>. None: only RECORD_URL links are taken.
    recordings_dir: str | None = None

    @field_validator("line_regions")
    @classmethod
    def _known_regions(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(r for r in value.values() if not is_region(r))
        if bad:
            raise ValueError(f"unknown region(s) {', '.join(bad)}: use ISO 3166 codes like AT")
        return {line.strip(): region.strip().upper() for line, region in value.items()}
