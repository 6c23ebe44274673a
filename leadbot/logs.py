"""Logging set-up, and the filter that keeps secrets out of every log line.

Third-party libraries log what they see: httpx the Bot API URL with the bot token in it,
aiohttp the request line of a Bitrix24 call with its token, aioimaplib the IMAP LOGIN
command. `SecretFilter` rewrites every record before any handler formats it: the message,
its arguments, the exception text and the stack. It replaces each configured secret (in the
spellings it takes inside URLs, JSON, reprs and IMAP commands) and every token-bearing shape
known by pattern, even when that token is not ours (a forged Bitrix24 URL, someone's `lb_`
token, an Authorization header).

See docs/operations/logging.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import string
import sys
import traceback
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, quote_plus, urlsplit

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

if TYPE_CHECKING:
    from leadbot.settings import Settings

REDACTED = "[redacted]"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LogFormat = Literal["text", "json"]

# Shapes that carry a token, redacted whether or not the token is configured here. Each is
# tried only when one of its needles is in the lower-cased line (most lines have none).
_PATTERNS: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    # Bot API paths /bot<id>:<token>/… and /file/bot<id>:<token>/… (colon maybe URL-quoted).
    (("/bot",), re.compile(r"(/bot)\d+(?::|%3A)[^/\s?#'\"]+", re.I), rf"\1{REDACTED}"),
    # A bare Telegram token, as in python-telegram-bot's "The token `…` was rejected".
    ((":", "%3a"), re.compile(r"[0-9]{5,}(?::|%3[Aa])[\w-]{30,}"), REDACTED),
    # Bitrix24 inbound webhooks /rest/<user>/<token>/<method>; also a URL cut short.
    (("/rest/",), re.compile(r"(/rest/(?:api/)?\d+/)[^/\s?#'\"]+"), rf"\1{REDACTED}"),
    # Web console sign-in links /app/login/<token> (a refused one is logged with its path).
    (("/app/login/",), re.compile(r"(/app/login/)(?!\{)[^/\s?#'\"]+"), rf"\1{REDACTED}"),
    # REST API tokens (crm.services.tokens): "lb_" + token_urlsafe(32).
    (("lb_",), re.compile(r"\blb_[\w-]{16,}"), REDACTED),
    # Header values: "Authorization: Bearer …", "'authorization': '…'", "(b'Authorization',
    # b'…')", the Telegram webhook secret.
    (
        ("authorization", "secret-token"),
        re.compile(
            r"(authorization|x-telegram-bot-api-secret-token)"
            r"(['\"]\s*,\s*(?:b?['\"])?|['\"]?\s*[:=]\s*(?:b?['\"])?)[^'\"\r\n]+",
            re.I,
        ),
        rf"\1\2{REDACTED}",
    ),
    # Query and form parameters such as hub.verify_token=…, access_token=…, password=….
    (
        ("token=", "secret=", "password=", "passwd="),
        re.compile(r"((?:token|secret|password|passwd)=)[^&\s'\"#]+", re.I),
        rf"\1{REDACTED}",
    ),
    # The password in a URL's user info: scheme://user:password@host (one SQLAlchemy already
    # masked as *** stays as it is).
    (("://",), re.compile(r"(://[^/\s:@]*:)(?!\*\*\*@)[^@\s/]+(@)"), rf"\1{REDACTED}\2"),
)


# Punctuation that URL libraries (WHATWG rules: httpx, yarl) leave unquoted in a path or query.
_PATH_SAFE = "".join(c for c in string.punctuation if c not in ' "#<>?`{}%')
_QUERY_SAFE = "".join(c for c in string.punctuation if c not in " \"#<>'%")


def _escaped(secret: str) -> set[str]:
    """The spellings a secret takes once a library has quoted it for its own output."""
    imap = secret.replace("\\", "\\\\").replace('"', '\\"')  # an IMAP quoted string
    forms: set[str] = set()
    for text in (secret, imap):
        forms |= {
            text,
            json.dumps(text)[1:-1],  # JSON, and the \" \\ of IMAP quoting
            repr(text)[1:-1],  # a str repr
            repr(text.encode())[2:-1],  # a bytes repr (aioimaplib's "Sending : b'…'")
            quote(text, safe=""),  # URL path or query, every reserved character quoted
            quote(text, safe=_PATH_SAFE),  # httpx and yarl leave most punctuation in a path
            quote(text, safe=_QUERY_SAFE),  # … and in a query
            quote_plus(text),  # form-encoded
        }
    return forms


class Redactor:
    """Replaces the given secrets (in all their spellings) and the token patterns."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms = {form for s in secrets if s for form in _escaped(s)}
        # Longest first: a secret that contains another is replaced whole.
        alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
        # Ignoring case also covers lower-case percent escapes (%3a).
        self._literal = re.compile(alternatives, re.IGNORECASE) if alternatives else None

    def __call__(self, text: str) -> str:
        if self._literal is not None:
            text = self._literal.sub(REDACTED, text)
        lower = text.lower()
        for needles, pattern, replacement in _PATTERNS:
            if any(needle in lower for needle in needles):
                text = pattern.sub(replacement, text)
        return text


class SecretFilter(logging.Filter):
    """Rewrites a record so that whatever formats it next sees no secret.

    The message is formatted here (msg % args) and the arguments dropped, and the exception
    text is formatted here too, so a handler's formatter only copies redacted text.
    """

    def __init__(self, redact: Redactor | None = None) -> None:
        super().__init__()
        self.redact = redact or Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_leadbot_redacted", None) is self.redact:
            return True  # one record, several handlers: once is enough
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: show its parts rather than lose the line
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        setattr(record, "_leadbot_redacted", self.redact)  # noqa: B010
        return True


def url_password(url: str | None) -> list[str]:
    """The password of a database or Redis URL, as written and decoded."""
    if not url:
        return []
    try:
        from sqlalchemy.engine import make_url

        decoded = make_url(url).password
    except Exception:
        decoded = None
    try:
        raw = urlsplit(url).password
    except ValueError:
        raw = None
    return [p for p in (decoded, raw) if p]


def configured_secrets(settings: Settings) -> list[str]:
    """Every secret the settings name: each SecretStr, mailbox passwords kept in a file or an
    environment variable, and the passwords in the database and Redis URLs."""
    from pydantic import BaseModel, SecretStr

    from channels.mail.component import read_password

    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, (tuple, list)):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)

    walk(settings)
    for box in settings.mailboxes:
        # Unreadable: the mail channel refuses to start; nothing to hide.
        with contextlib.suppress(Exception):
            found.append(read_password(box))
    found += url_password(settings.database.url)
    found += url_password(settings.redis.url)
    return [s for s in found if s]


class TextFormatter(logging.Formatter):
    """`LOG_FORMAT` with ISO 8601 local time and its UTC offset: lines from hosts in
    different zones (or a DST change) still sort and compare."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        stamp = datetime.fromtimestamp(record.created).astimezone()
        return stamp.isoformat(timespec="milliseconds")


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, and
    exc_info / stack_info when there are.

    python-json-logger formats `exc_info` itself, which would bypass the redaction the
    `SecretFilter` did on `exc_text`: the record's exc_info is hidden while formatting, so
    only the redacted text is written."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            reserved_attrs=[*RESERVED_ATTRS, "_leadbot_redacted"],
        )

    def format(self, record: logging.LogRecord) -> str:
        exc_info, record.exc_info = record.exc_info, None
        try:
            return super().format(record)
        finally:
            record.exc_info = exc_info


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    return JsonLineFormatter() if log_format == "json" else TextFormatter()


_FILTER = SecretFilter()
_HANDLER: logging.Handler | None = None  # the root handler setup_logging added
# Loggers that add a stdout/stderr handler of their own when they find none (SQLAlchemy's
# `echo`, redis-py's push responses): given a NullHandler, they propagate to ours instead.
_SELF_HANDLING = ("sqlalchemy.engine.Engine", "push_response")
# Libraries that log every request or protocol line at INFO: heard only at DEBUG (at INFO
# they would drown Leadbot's own lines). Their warnings and errors always come through.
CHATTY = (
    "httpx",
    "httpcore",
    "aioimaplib",
    "telegram",
    "apscheduler",
    "hpack",
    "alembic.runtime.plugins",  # one line per plugin whenever migrations are looked at
)


def setup_logging(
    level: str | int, secrets: Iterable[str] = (), log_format: LogFormat = "text"
) -> SecretFilter:
    """Configure the process's logging: one stderr handler on the root logger at `level`
    in `log_format`, with the secret filter on it and on every other handler there is.

    If the root logger already has handlers of someone else (an embedding program, pytest),
    they are kept, get the filter, and their level (and the libraries' levels) is left
    alone. Calling it again replaces the secrets, the level and the format.
    """
    global _HANDLER
    _FILTER.redact = Redactor(secrets)
    root = logging.getLogger()
    if not root.handlers:
        _HANDLER = logging.StreamHandler(sys.stderr)
        root.addHandler(_HANDLER)
        logging.captureWarnings(True)  # warnings, too, go through the filter
        for name in _SELF_HANDLING:
            own = logging.getLogger(name)
            if not own.handlers:
                own.addHandler(logging.NullHandler())
    if _HANDLER is not None and _HANDLER in root.handlers:
        _HANDLER.setFormatter(formatter_for(log_format))
        root.setLevel(level.upper() if isinstance(level, str) else level)
        quiet = root.getEffectiveLevel() > logging.DEBUG
        for name in CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.NOTSET)
    loggers = [root, *logging.root.manager.loggerDict.values()]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    return _FILTER


def redact(text: str) -> str:
    """`text` with every secret the last `setup_logging` was given (and the patterns) hidden."""
    return _FILTER.redact(text)


def safe_url(url: str) -> str:
    """A database URL as it may be shown: its password as ***."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable database url)"


def safe_redis_url(url: str) -> str:
    """The Redis server without its password: scheme://host:port."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{parts.hostname or 'localhost'}:{parts.port or 6379}"
