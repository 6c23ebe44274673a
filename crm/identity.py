"""Normalizing loose values typed by reps or read from files into matcher identities, and
the form a stored one is shown in."""

from __future__ import annotations

import re
from collections.abc import Iterable

from matching.model import EventIdentities
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


def shown_comm(kind: str, raw: str, value: str | None, extension: str | None) -> str:
    """A communication as a rep reads it: an email with its Unicode domain (it is stored and
    matched in ASCII), a phone as given plus its extension when the raw form lacks it."""
    if kind == "email":
        return display_email(value or raw)
    if kind == "phone" and extension and _DIGITS.findall(raw)[-1:] != [extension]:
        return f"{raw} ext. {extension}"
    return raw
