"""Service configuration: one TOML file (LEADBOT_CONFIG / --config) plus LEADBOT_* overrides.

Every key is validated at start-up; unknown keys are errors, so a typo never silently falls back
to a default. Secrets are `SecretStr`, masked in every repr and log line.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.settings import TelegramSettings as TelegramSettings
from channels.mail.settings import MailboxSettings as MailboxSettings
from channels.phone.settings import PhoneSettings as PhoneSettings
from channels.sms.settings import SmsSettings as SmsSettings
from channels.webform.settings import FormSettings as FormSettings
from channels.whatsapp.settings import WhatsAppSettings as WhatsAppSettings
from console.settings import ConsoleSettings as ConsoleSettings
from crm.config import DEFAULT_LOST_REASONS
from crm.config import ConfigError as ConfigError

Semantic = Literal["process", "success", "failure"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # The URL the outside world uses to reach us (webhook signatures are computed over it).
    # Unset: this host and port (see _public_url_follows_the_port).
    public_url: str = "http://127.0.0.1:8080"
    shutdown_timeout: float = Field(10.0, gt=0)
    # Reverse proxies (addresses or networks) whose X-Forwarded-For names the real client (the
    # web forms' per-address rate limit); from anybody else the header is ignored.
    trusted_proxies: tuple[str, ...] = ()
    # The event loop of `serve` and `worker`: uvloop (where installed) or the standard one.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    @model_validator(mode="after")
    def _public_url_follows_the_port(self) -> HttpSettings:
        # Unset, the public URL is where this server listens: with only the port changed
        # (8080 taken), sign-in links, recording links and the URL Twilio signatures are
        # checked against would otherwise still name 8080. Port 0 (any free port) cannot be
        # named in advance and keeps the default.
        if "public_url" in self.model_fields_set or self.port == 0:
            return self
        host = self.host
        if host in ("", "0.0.0.0", "::"):  # every address: this machine's browser uses loopback
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        # The section is frozen once validated; this is still its validation.
        object.__setattr__(self, "public_url", f"http://{host}:{self.port}")
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value


class DatabaseSettings(_Section):
    url: str = "sqlite+aiosqlite:///./leadbot.db"
    echo: bool = False
    pool_size: int = Field(10, ge=1)
    # `serve` / `worker` start-up: wait up to this long for the database (one line per
    # retry); 0: exit at once with one line naming it.
    startup_wait: float = Field(0.0, ge=0)


class RedisSettings(_Section):
    url: str | None = None  # None: in-process queue and locks
    stream: str = "leadbot:events"
    group: str = "leadbot-workers"
    claim_idle_ms: int = Field(30_000, ge=100)
    # Like database.startup_wait, for Redis.
    startup_wait: float = Field(0.0, ge=0)


class QueueSettings(_Section):
    # The in-process queue's journal (no Redis): events a channel acknowledged are on disk
    # before the acknowledgement, and a restart processes what a crash left. None: next to a
    # SQLite database file (`<file>.queue`), `./leadbot-queue` (relative to the working
    # directory) for PostgreSQL; "": no journal.
    journal_dir: str | None = None
    # fdatasync before acknowledging: survives a machine crash too. false: the process's
    # crash or kill only (the OS still has the write), for ~2-3 ms less per acknowledgement.
    journal_sync: bool = True
    # The in-process queue, under load: a new batch starts at most this often (seconds)
    # unless a full one waits, so intake takes fewer, larger batches (each costs a
    # transaction and its reads however small). Adds up to this much to an event's wait
    # for intake, never to a webhook's answer; an event after a quiet spell goes at once.
    # 0: take whatever waits as soon as the last batch is done.
    linger: float = Field(0.025, ge=0, le=1)
    # /readyz answers 503 when the oldest event waiting for intake is older (seconds).
    max_backlog_age: float = Field(300.0, gt=0)
    # Every queue: an event intake could not take is tried again after retry_delay seconds,
    # doubling up to retry_max_delay; after max_failures failures that were not an outage (a
    # database outage never counts) it goes to the dead letters (`leadbot dead`).
    max_failures: int = Field(5, ge=1)
    retry_delay: float = Field(1.0, gt=0)
    retry_max_delay: float = Field(60.0, gt=0)


class StatusSettings(_Section):
    id: str
    name: str
    semantic: Semantic = "process"


class PipelineSettings(_Section):
    id: str
    name: str
    stages: tuple[StatusSettings, ...]

    @model_validator(mode="after")
    def _needs_all_semantics(self) -> PipelineSettings:
        kinds = {s.semantic for s in self.stages}
        if kinds != {"process", "success", "failure"}:
            raise ValueError(
                f"pipeline {self.id!r} needs at least one in-progress, one success and one "
                "failure stage"
            )
        return self


DEFAULT_LEAD_STATUSES = (
    StatusSettings(id="NEW", name="New", semantic="process"),
    StatusSettings(id="IN_PROCESS", name="In progress", semantic="process"),
    StatusSettings(id="PROCESSED", name="Processed", semantic="process"),
    StatusSettings(id="JUNK", name="Junk", semantic="failure"),
    StatusSettings(id="CONVERTED", name="Converted", semantic="success"),
)

DEFAULT_PIPELINES = (
    PipelineSettings(
        id="sales",
        name="Sales",
        stages=(
            StatusSettings(id="NEW", name="New", semantic="process"),
            StatusSettings(id="PREPARATION", name="Preparing offer", semantic="process"),
            StatusSettings(id="NEGOTIATION", name="Negotiation", semantic="process"),
            StatusSettings(id="WON", name="Won", semantic="success"),
            StatusSettings(id="LOSE", name="Lost", semantic="failure"),
        ),
    ),
)


class CrmSettings(_Section):
    mode: Literal["classic", "simple"] = "classic"
    repeat_sales: bool = True
    # Reuse a closed lead of the same person; only meaningful with repeat_sales off.
    traditional_mode: bool = False
    default_region: str = Field("DE", min_length=2, max_length=2)
    default_currency: str = "EUR"
    # What an ordinary lead converts into (a repeat lead always converts into a deal only).
    lead_converts_to: tuple[Literal["contact", "company", "deal"], ...] = ("contact", "deal")
    lead_statuses: tuple[StatusSettings, ...] = DEFAULT_LEAD_STATUSES
    pipelines: tuple[PipelineSettings, ...] = DEFAULT_PIPELINES
    # A new lead not taken within this many minutes goes to the next rep (0 = never).
    escalation_minutes: int = Field(15, ge=0)
    timezone: str = "Europe/Berlin"
    # Offered when a deal is lost (a rep may type another reason); counted in /stats.
    lost_reasons: tuple[str, ...] = DEFAULT_LOST_REASONS

    @field_validator("lost_reasons")
    @classmethod
    def _reasons(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(r.strip() for r in value)
        if not all(0 < len(r) <= 60 for r in cleaned):
            raise ValueError("each lost reason needs 1 to 60 characters")
        return cleaned

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        # Checked here: the bot and the Bitrix24 endpoint build a ZoneInfo from it later.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name such as 'Europe/Berlin')"
            ) from None
        return value

    @model_validator(mode="after")
    def _check(self) -> CrmSettings:
        if not self.pipelines:
            raise ValueError("at least one pipeline is needed")
        semantics = {s.semantic for s in self.lead_statuses}
        if semantics != {"process", "success", "failure"}:
            raise ValueError("lead_statuses need an in-progress, a success and a failure status")
        if "deal" not in self.lead_converts_to and not self.lead_converts_to:
            raise ValueError("lead_converts_to must not be empty")
        return self


class Settings(BaseSettings):
    """The whole configuration; see config/leadbot.example.toml for every key."""

    model_config = SettingsConfigDict(
        env_prefix="LEADBOT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    http: HttpSettings = HttpSettings()
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    queue: QueueSettings = QueueSettings()
    crm: CrmSettings = CrmSettings()
    telegram: TelegramSettings = TelegramSettings()
    phone: PhoneSettings = PhoneSettings()
    mailboxes: tuple[MailboxSettings, ...] = ()
    forms: tuple[FormSettings, ...] = ()
    whatsapp: WhatsAppSettings = WhatsAppSettings()
    sms: SmsSettings = SmsSettings()
    console: ConsoleSettings = ConsoleSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Set through LEADBOT_CONFIG or --config; read before the other keys.
    config: Path | None = Field(default=None, exclude=True)

    @property
    def base_dir(self) -> Path:
        """Where relative paths of the config point: the config file's directory (a unit
        file without WorkingDirectory still finds its database), else the working one."""
        return self.config.resolve().parent if self.config else Path.cwd()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_path(init_settings)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def _config_path(init_settings: PydanticBaseSettingsSource) -> Path | None:
    given = init_settings().get("config") or os.environ.get("LEADBOT_CONFIG")
    return Path(given) if given else None


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Read and validate the configuration, or raise ConfigError naming the bad key."""
    if config is not None:
        overrides["config"] = Path(config)
    path = overrides.get("config") or os.environ.get("LEADBOT_CONFIG")
    if path and not Path(path).is_file():
        raise ConfigError(f"config file {path}: not found")
    try:
        return anchored(Settings(**overrides))
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None
    except ValueError as exc:  # TOML syntax errors and the like
        raise ConfigError(f"config file {path}: {exc}") from None


def anchored(settings: Settings) -> Settings:
    """`settings` with every relative file path of a config file made relative to that
    file's directory: the SQLite database, the queue journal, the recordings folder, the
    mailboxes' password and CA files. Without a config file they stay relative to the
    working directory."""
    if settings.config is None:
        return settings
    base = settings.base_dir

    def under(path: str | Path | None) -> Path | None:
        if path is None or str(path) == "" or Path(path).is_absolute():
            return None
        return base / path

    update: dict[str, Any] = {}
    db_url = _sqlite_under(settings.database.url, base)
    if db_url is not None:
        update["database"] = settings.database.model_copy(update={"url": db_url})
    journal = under(settings.queue.journal_dir)
    if journal is not None:
        update["queue"] = settings.queue.model_copy(update={"journal_dir": str(journal)})
    recordings = under(settings.phone.recordings_dir)
    if recordings is not None:
        update["phone"] = settings.phone.model_copy(update={"recordings_dir": str(recordings)})
    boxes = []
    for box in settings.mailboxes:
        files: dict[str, object] = {k: under(getattr(box, k)) for k in ("password_file", "ca_file")}
        smtp_ca = under(box.smtp.ca_file) if box.smtp else None
        if box.smtp is not None and smtp_ca is not None:
            files["smtp"] = box.smtp.model_copy(update={"ca_file": smtp_ca})
        boxes.append(box.model_copy(update={k: v for k, v in files.items() if v is not None}))
    update["mailboxes"] = tuple(boxes)
    return settings.model_copy(update=update)


def _sqlite_under(url: str, base: Path) -> str | None:
    """A SQLite URL whose file path is relative, rewritten to lie under `base`; else None."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return None  # reported where the URL is used
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return None
    if path.startswith("file:") or Path(path).is_absolute():
        return None
    return parsed.set(database=str(base / path)).render_as_string(hide_password=False)


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    more = len(exc.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"config error: {key}: {msg}{tail}"


MASK = "***"


def effective(settings: Settings) -> dict[str, Any]:
    """The settings in force as nested key/values, for the admins to read: every secret
    masked. A `SecretStr` shows as *** when set; the database URL's password as ***; every
    other text goes through the log redactor with every configured secret (a token pasted
    into a URL, a mailbox password in a file, the Redis URL's password) and its patterns."""
    from pydantic import SecretStr

    from leadbot.logs import Redactor, configured_secrets, safe_url

    redact = Redactor(configured_secrets(settings))

    def shown(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return MASK if value.get_secret_value() else ""
        if isinstance(value, BaseModel):
            return {k: shown(getattr(value, k)) for k in type(value).model_fields}
        if isinstance(value, dict):
            return {str(k): shown(v) for k, v in value.items()}
        if isinstance(value, (tuple, list)):
            return [shown(v) for v in value]
        if isinstance(value, Path):
            return redact(str(value))
        if isinstance(value, str):
            return redact(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        return redact(str(value))  # times, decimals, enums: as they read

    doc = shown(settings)
    doc.pop("config", None)
    doc["database"]["url"] = redact(safe_url(settings.database.url))
    return dict(doc)
