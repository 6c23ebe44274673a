"""One mailbox's config section (`[[mailboxes]]`).
The root's `leadbot.settings.Settings` holds it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class SmtpSettings(BaseModel):
    """How a mailbox sends the reps' answers (`[mailboxes.smtp]`); without it, no mail replies
    go out from that mailbox."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int = Field(587, ge=1, le=65535)
    # tls: TLS from the first byte (port 465); starttls: upgrade a plain connection (587).
    security: Literal["tls", "starttls", "none"] = "starttls"
    user: str | None = None  # None: the mailbox's IMAP login
    password: SecretStr | None = None  # None: the mailbox's IMAP password
    from_address: str  # the mailbox's address customers see and answer to
    from_name: str | None = None  # e.g. "Example GmbH Sales"
    ca_file: Path | None = None  # trust this CA, else the system's
    timeout: float = Field(30.0, gt=0)  # seconds for the whole delivery to the server
    quote_original: bool = True  # the customer's mail quoted below the answer


class MailboxSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    host: str
    port: int = 993
    security: Literal["tls", "starttls", "none"] = "tls"
    user: str
    password: SecretStr | None = None
    password_file: Path | None = None
    password_env: str | None = None  # name of the environment variable holding the password
    ca_file: Path | None = None  # trust this CA (self-signed company server), else the system's
    folder: str = "INBOX"
    processed_folder: str | None = None  # None: flag \Seen and keep in place
    quarantine_folder: str = "Leadbot-Quarantine"
    region: str | None = None
    queue: tuple[int, ...] = ()  # rep ids for round robin of new leads from this mailbox
    first_sync_days: int = Field(7, ge=0)
    allow_lists: bool = False
    robot_senders: tuple[str, ...] = ()  # form robots: Reply-To is the customer
    rate_limit_per_hour: int = Field(20, ge=1)
    poll_interval: float = Field(60.0, gt=0)
    idle_renew_seconds: float = Field(25 * 60.0, gt=0, le=29 * 60.0)
    reconnect_min_seconds: float = Field(1.0, gt=0)
    reconnect_max_seconds: float = Field(120.0, gt=0)
    command_timeout: float = Field(30.0, gt=0)  # seconds for one IMAP command
    # Spam (docs/channels/mail.md#spam; built into a SpamConfig by channels.mail.spamguard).
    spam_folder: str = "Leadbot-Spam"
    spam_trust_headers: bool = True  # believe the server's X-Spam-*, rspamd and DMARC headers
    spam_markers: bool = True
    spam_marker_score: float = Field(5.0, gt=0)
    spamd_host: str | None = None  # SpamAssassin's spamd; None: no scanner
    spamd_port: int = Field(783, ge=1, le=65535)
    spamd_timeout: float = Field(10.0, gt=0)
    smtp: SmtpSettings | None = None  # answering from this mailbox (docs/channels/mail.md#replies)

    @model_validator(mode="after")
    def _one_password(self) -> MailboxSettings:
        given = [self.password, self.password_file, self.password_env]
        if sum(v is not None for v in given) != 1:
            raise ValueError(
                f"mailbox {self.name!r} needs exactly one of password, password_file, password_env"
            )
        return self
