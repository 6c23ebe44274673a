"""Normalizing loose values typed by reps or read from files into matcher identities."""

from __future__ import annotations

from collections.abc import Iterable

from matching.model import EventIdentities
from matching.normalize import normalize_email, normalize_phone


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
