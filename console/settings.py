"""The web console's config section (`[console]`).
The root's `leadbot.settings.Settings` holds it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Serve the web console under /app/ (sign-in links come from the bot's /web).
    enabled: bool = True
    # How long a sign-in lasts; the session ends then, however active the browser is.
    session_hours: float = Field(12.0, gt=0, le=24 * 30)
    # Seconds the quarantine page waits for each mailbox's spam folder (the IMAP server's
    # greeting, login and listing together); a slower mailbox shows as unreachable beside the
    # others, so one hanging server costs the page at most this long.
    quarantine_timeout: float = Field(5.0, gt=0, le=60)
