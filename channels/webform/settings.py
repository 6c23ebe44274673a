"""One web form's config section (`[[forms]]`).
The root's `leadbot.settings.Settings` holds it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class FormSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    field_map: dict[str, str] = {}
    region: str | None = None
    queue: tuple[int, ...] = ()
    duplicate_mode: Literal["merge", "always_new"] = "merge"
    success_redirect: str | None = None
    cors_origins: tuple[str, ...] = ()
    honeypot: str = "website"  # "" turns the honeypot off
    rate_limit_per_minute: int = Field(10, ge=0)  # per client address; 0 = unlimited
    # Lead title; placeholders {form} {name} {company} {phone} {email} {subject}.
    title_template: str = "Web form {form}: {name}"
