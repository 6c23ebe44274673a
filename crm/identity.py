"""Normalizing loose values typed by reps or read from files into matcher identities, and
the form a stored one is shown in."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from crm.errors import InvalidInput
from matching.model import CommKind, EventIdentities, Identity
from matching.normalize import display_email, normalize_email, normalize_phone

_DIGITS = re.compile(r"\d+")


def identities_from_values(
    phones: Iterable[str], emails: Iterable[str], region: str | None
) -> EventIdentities:
    normalized_emails: list[str] = []
    for raw in emails:
        email = normalize_email(raw)
        if email and email not in normalized_emails:
            normalized_emails.append(email)
    return EventIdentities(
        phones=tuple(normalize_phone(p, region) for p in phones if p.strip()),
        emails=tuple(normalized_emails),
    )


@dataclass(frozen=True, slots=True)
class Comms:
    """Ways to reach someone, as typed."""

    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    telegram: tuple[str, ...] = ()  # Telegram user ids or @usernames
    whatsapp: tuple[str, ...] = ()  # WhatsApp numbers


def _handle(kind: CommKind, raw: str, region: str) -> Identity | None:
    raw = raw.strip()
    if not raw:
        return None
    if kind is CommKind.WHATSAPP:
        # WhatsApp ids are the number's digits (what the Cloud API sends as wa_id).
        e164 = normalize_phone(raw, region).e164
        return Identity(kind, e164[1:]) if e164 else None
    return Identity(kind, raw.removeprefix("@").lower())


def identities(comms: Comms, region: str) -> EventIdentities:
    base = identities_from_values(comms.phones, comms.emails, region)
    handles = [_handle(CommKind.TELEGRAM, t, region) for t in comms.telegram]
    handles += [_handle(CommKind.WHATSAPP, w, region) for w in comms.whatsapp]
    bad = [w for w, h in zip(comms.whatsapp, handles[len(comms.telegram) :], strict=True) if not h]
    if bad:
        raise InvalidInput(f"{bad[0]!r} is not a WhatsApp number")
    return EventIdentities(
        phones=base.phones,
        emails=base.emails,
        handles=tuple(dict.fromkeys(h for h in handles if h)),
    )


def shown_comm(kind: str, raw: str, value: str | None, extension: str | None) -> str:
    """A communication as a rep reads it: an email with its Unicode domain (it is stored and
    matched in ASCII), a phone as given plus its extension when the raw form lacks it."""
    if kind == "email":
        return display_email(value or raw)
    if kind == "phone" and extension and _DIGITS.findall(raw)[-1:] != [extension]:
        return f"{raw} ext. {extension}"
    return raw
