"""The crm's duplicate warnings (`DuplicateHit`) as the console shows them: with links to the
records that hold a phone or email already. The /app/new/* forms (console/create.py) and the
record pages' Edit (console/records.py) share them, and so does `/app/new/check`, which the
pages' scripts ask as the user types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from console.web import PREFIX
from crm.services.duplicates import DuplicateHit


def record_url(kind: str, record_id: int) -> str:
    return f"{PREFIX}/{kind}/{record_id}"


def hit_json(hit: DuplicateHit) -> dict[str, Any]:
    """A duplicate hit as the page and the script show it, with a link to the holder."""
    held = hit.owner_type is not None and hit.owner_id is not None
    return {
        "kind": hit.kind,
        "value": hit.value,
        "message": hit.message,
        "owner_type": hit.owner_type,
        "owner_id": hit.owner_id,
        "owner_title": hit.owner_title,
        "url": record_url(str(hit.owner_type), int(hit.owner_id or 0)) if held else None,
    }


@dataclass(frozen=True, slots=True)
class Holder:
    """A record holding a typed value: "contact #12 Anna Meyer", linked."""

    text: str
    url: str


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
        if hit.owner_type is None or hit.owner_id is None:
            listed[hit.value] = hit.message
            holders.setdefault(hit.value, [])
            continue
        text = f"{hit.owner_type} #{hit.owner_id}" + (f" {hit.owner_title}" * bool(hit.owner_title))
        holders.setdefault(hit.value, []).append(
            Holder(text, record_url(hit.owner_type, hit.owner_id))
        )
    return [Known(value, tuple(held), listed.get(value)) for value, held in holders.items()]
