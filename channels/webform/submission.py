"""Web-form submissions (`POST /forms/<form_key>`) → one `InboundEvent`, per-form config.

The route parses the body (form-encoded via `fields_from_pairs`, JSON via `fields_from_json`),
checks the form's `RateLimiter` (see channels.rate_limit), then calls `parse_submission`:
- `FormError(status, reason)`: answer `status` with the reason;
- `HoneypotTripped`: answer exactly like a success but create nothing, so bots learn nothing;
- an event: hand it to intake, then redirect to `success_redirect` or answer JSON.

Idempotent retries: pass `submission_id_for(fields, request_id)` as `submission_id`. It is the
client's own `submission_id` field when it sent a well-formed one (a page retrying the same POST
then maps to the same event), otherwise the route's request id.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Literal

from channels.event import Channel, EventMeta, InboundEvent, RegisterMode
from channels.rate_limit import RateLimiter
from matching.normalize import normalize_email, normalize_phone

__all__ = [
    "OUR_FIELDS",
    "UTM_FIELDS",
    "FormConfig",
    "FormError",
    "HoneypotTripped",
    "RateLimiter",
    "cors_headers",
    "fields_from_json",
    "fields_from_pairs",
    "parse_submission",
    "submission_id_for",
]

OUR_FIELDS = ("name", "first_name", "last_name", "company", "phone", "email", "message", "subject")
UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
SUBMISSION_ID_FIELD = "submission_id"
_TITLE_PLACEHOLDERS = frozenset({"form", "name", "company", "phone", "email", "subject"})
_FORM_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CLIENT_SUBMISSION_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")
_MAX_FIELDS = 200
_MAX_VALUE = 20_000  # characters; a long message is fine, a megabyte of junk is not


class FormError(Exception):
    """The submission is rejected; `status` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class HoneypotTripped(Exception):
    """A bot filled the hidden field: answer as if it worked, create nothing."""


@dataclass(frozen=True, slots=True)
class FormConfig:
    """One web form. `field_map` maps our field names to the form's; unnamed ones keep ours."""

    key: str
    field_map: Mapping[str, str] = field(default_factory=dict, hash=False)
    region: str | None = None
    honeypot_field: str = "website"  # "" disables the honeypot
    duplicate_mode: Literal["merge", "always_new"] = "merge"
    success_redirect: str | None = None  # None: answer JSON
    cors_origins: tuple[str, ...] = ()  # "*" allows any origin
    rate_limit_per_minute: int = 10  # per client address; 0 = unlimited
    responsible_queue: tuple[int, ...] = ()  # rep ids to distribute new records among
    title_template: str = "Web form {form}: {name}"

    def __post_init__(self) -> None:
        if _FORM_KEY.fullmatch(self.key) is None:
            raise ValueError(f"form key {self.key!r}: use 1-64 letters, digits, '-' or '_'")
        unknown = set(self.field_map) - set(OUR_FIELDS)
        if unknown:
            raise ValueError(f"form {self.key}: unknown fields in field_map: {sorted(unknown)}")
        merged = {name: name for name in OUR_FIELDS} | dict(self.field_map)
        object.__setattr__(self, "field_map", MappingProxyType(merged))
        if self.honeypot_field and self.honeypot_field in merged.values():
            raise ValueError(f"form {self.key}: honeypot {self.honeypot_field!r} is a real field")
        if self.duplicate_mode not in ("merge", "always_new"):
            raise ValueError(f"form {self.key}: duplicate_mode must be 'merge' or 'always_new'")
        if self.rate_limit_per_minute < 0:
            raise ValueError(f"form {self.key}: rate_limit_per_minute must be >= 0")
        if self.success_redirect and not self.success_redirect.startswith(
            ("https://", "http://", "/")
        ):
            raise ValueError(f"form {self.key}: success_redirect must be a URL or a /path")
        _check_template(self.key, self.title_template)

    def rate_limiter(self) -> RateLimiter:
        """A fresh limiter for this form (the route keeps one per form, keyed by client IP)."""
        return RateLimiter(self.rate_limit_per_minute, 60.0)


def _check_template(key: str, template: str) -> None:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"form {key}: title_template: {exc}") from None
    for _text, name, spec, conversion in parsed:
        if name is not None and (name not in _TITLE_PLACEHOLDERS or spec or conversion):
            raise ValueError(
                f"form {key}: title_template may only use {sorted(_TITLE_PLACEHOLDERS)}"
            )


def fields_from_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Form-encoded pairs (repeated names allowed, e.g. checkboxes) → the shape we parse."""
    fields: dict[str, str | list[str]] = {}
    for name, value in pairs:
        old = fields.get(name)
        if old is None:
            fields[name] = value
        else:
            fields[name] = [*old, value] if isinstance(old, list) else [old, value]
    return fields


def fields_from_json(body: object) -> dict[str, str | list[str]]:
    """A decoded JSON body → the shape we parse; scalars become text, nested objects 400."""
    if not isinstance(body, dict):
        raise FormError(400, "JSON body must be an object")
    fields: dict[str, str | list[str]] = {}
    for name, value in body.items():
        if isinstance(value, list):
            fields[str(name)] = [_json_scalar(name, item) for item in value]
        else:
            fields[str(name)] = _json_scalar(name, value)
    return fields


def _json_scalar(name: object, value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | int | float):
        return str(value)
    raise FormError(400, f"field {name!r} must be text, a number or a list of those")


def submission_id_for(fields: Mapping[str, str | list[str]], request_id: str) -> str:
    """The client's `submission_id` when well-formed (idempotent retries), else `request_id`."""
    given = fields.get(SUBMISSION_ID_FIELD)
    if isinstance(given, str) and _CLIENT_SUBMISSION_ID.fullmatch(given.strip()):
        return given.strip()
    return request_id


def parse_submission(
    cfg: FormConfig,
    fields: Mapping[str, str | list[str]],
    *,
    client_ip: str,
    submission_id: str,
    now: datetime,
) -> InboundEvent:
    """The event for one submission; raises `FormError` or `HoneypotTripped`."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    values = _clean(fields)
    if cfg.honeypot_field and values.get(cfg.honeypot_field):
        raise HoneypotTripped(cfg.key)
    ours = {ours: values.get(theirs, []) for ours, theirs in cfg.field_map.items()}
    if not any(values.values()):
        raise FormError(400, "the form is empty")
    phones, emails = _contacts(ours["phone"], ours["email"], cfg.region)

    first, last = _first(ours["first_name"]), _first(ours["last_name"])
    display = _first(ours["name"]) or " ".join(p for p in (first, last) if p) or None
    company, subject = _first(ours["company"]), _first(ours["subject"])
    title = cfg.title_template.format(
        form=cfg.key,
        name=display or company or (emails or phones or ("",))[0],
        company=company or "",
        phone=phones[0] if phones else "",
        email=emails[0] if emails else "",
        subject=subject or "",
    )
    meta: EventMeta = {
        "form": cfg.key,
        "client_ip": client_ip,
        "duplicate_mode": cfg.duplicate_mode,
        "responsible_queue": list(cfg.responsible_queue),
        "utm": {k: ", ".join(values[k]) for k in UTM_FIELDS if values.get(k)},
        "fields": _unmapped(cfg, values),
    }
    if subject:
        meta["form_subject"] = subject
    return InboundEvent(
        channel=Channel.WEBFORM,
        external_id=f"{cfg.key}:{submission_id}",
        occurred_at=now,
        display_name=display,
        first_name=first,
        last_name=last,
        company_name=company,
        phones=phones,
        emails=emails,
        subject=title.strip() or None,
        text="\n".join(ours["message"]) or None,
        source="WEBFORM",
        line=cfg.key,
        phone_region=cfg.region,
        register_mode=(
            RegisterMode.ALWAYS_ADD if cfg.duplicate_mode == "always_new" else RegisterMode.DEFAULT
        ),
        meta=meta,
    )


def _clean(fields: Mapping[str, str | list[str]]) -> dict[str, list[str]]:
    """Each field's non-blank values, stripped; oversized input is refused."""
    if len(fields) > _MAX_FIELDS:
        raise FormError(413, f"more than {_MAX_FIELDS} fields")
    cleaned: dict[str, list[str]] = {}
    for name, raw in fields.items():
        items = raw if isinstance(raw, list) else [raw]
        if len(items) > _MAX_FIELDS:
            raise FormError(413, f"field {name!r} has too many values")
        kept = []
        for item in items:
            if not isinstance(item, str):
                raise FormError(400, f"field {name!r} is not text")
            if len(item) > _MAX_VALUE:
                raise FormError(413, f"field {name!r} is longer than {_MAX_VALUE} characters")
            if text := item.replace("\x00", "").strip():
                kept.append(text)
        cleaned[name] = kept
    return cleaned


def _contacts(
    raw_phones: list[str], raw_emails: list[str], region: str | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Phones and emails to keep; refuses a submission nobody could answer."""
    for raw in raw_emails:
        if normalize_email(raw) is None:
            raise FormError(422, f"{raw[:100]!r} is not a valid email address")
    usable = [p for p in raw_phones if normalize_phone(p, region).valid]
    if raw_emails:
        return tuple(raw_phones), tuple(raw_emails)
    if usable:
        return tuple(raw_phones), ()
    if raw_phones:
        raise FormError(422, f"{raw_phones[0][:100]!r} is not a phone number we can call")
    raise FormError(400, "a phone number or an email address is required")


def _unmapped(cfg: FormConfig, values: dict[str, list[str]]) -> dict[str, str]:
    skip = {*cfg.field_map.values(), *UTM_FIELDS, SUBMISSION_ID_FIELD, cfg.honeypot_field}
    return {name: ", ".join(v) for name, v in values.items() if v and name not in skip}


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def cors_headers(cfg: FormConfig, origin: str | None) -> dict[str, str]:
    """CORS response headers for `origin`, or {} when the form does not allow it."""
    if not origin or not cfg.cors_origins:
        return {}
    wanted = origin.strip().rstrip("/").casefold()
    allowed = {o.strip().rstrip("/").casefold() for o in cfg.cors_origins}
    if "*" in allowed:
        allow = "*"
    elif wanted in allowed and wanted != "null":
        allow = origin.strip()
    else:
        return {}
    return {
        "Access-Control-Allow-Origin": allow,
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": "600",
        "Vary": "Origin",
    }
