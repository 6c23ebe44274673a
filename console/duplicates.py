"""The crm's duplicate warnings (`DuplicateHit`) as the console shows them: with links to the
records that hold a phone or email already (those the viewer may open; the crm leaves out the
id and title of the others). The /app/new/* forms (console/create.py) and the
record pages' Edit (console/records.py) share them, and so does `/app/new/check`, which the
pages' scripts ask as the user types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from console.web import PREFIX
from crm.services.duplicates import DuplicateHit


def record_url(kind: str, record_id: int) -> str:
    return f"{PREFIX}/{kind}/{record_id}"


@dataclass(frozen=True, slots=True)
class Holder:
    """A record holding a typed value: "contact #12 Anna Meyer", linked; one the viewer may
    not open (the service left out its id and title): "a lead of another rep (Otto)", unlinked."""

    text: str
    url: str | None


def holder(hit: DuplicateHit) -> Holder | None:
    """The record holding a hit's value; None for an exception list entry."""
    if hit.owner_type is None:
        return None
    if hit.hidden or hit.owner_id is None:
        whose = f" ({hit.owner_rep})" if hit.owner_rep else ""
        return Holder(f"a {hit.owner_type} of another rep{whose}", None)
    title = f" {hit.owner_title}" if hit.owner_title else ""
    url = record_url(hit.owner_type, hit.owner_id)
    return Holder(f"{hit.owner_type} #{hit.owner_id}{title}", url)


def hit_json(hit: DuplicateHit) -> dict[str, Any]:
    """A duplicate hit as the page and the script show it, with a link to the holder where
    the viewer may open it."""
    held = holder(hit)
    return {
        "kind": hit.kind,
        "value": hit.value,
        "message": hit.message,
        "owner_type": hit.owner_type,
        "owner_id": hit.owner_id,
        "owner_title": hit.owner_title,
        "owner_rep": hit.owner_rep,
        "hidden": hit.hidden,
        "holder": held.text if held else None,
        "url": held.url if held else None,
    }


@dataclass(frozen=True, slots=True)
class Known:
    """One typed value that is known already: the records that hold it, or (exception list)
    the service's sentence."""

    value: str
    holders: tuple[Holder, ...] = ()
    listed: str | None = None


def known_values(hits: list[DuplicateHit]) -> list[Known]:
    """The hits grouped by value, in the service's order: "+49301234567 is already on
    contact #12 Anna Meyer — lead #40"."""
    holders: dict[str, list[Holder]] = {}
    listed: dict[str, str] = {}
    for hit in hits:
        held = holder(hit)
        holders.setdefault(hit.value, [])
        if held is None:
            listed[hit.value] = hit.message
        else:
            holders[hit.value].append(held)
    return [Known(value, tuple(held), listed.get(value)) for value, held in holders.items()]
