"""Duplicate control of typed-in phones, emails and handles: which known records (or exception
list entries) hold them. Hand-made records (crm.services.handmade) and edits through the API
(crm.services.records, crm.services.edits) refuse a hit with `DuplicateWarning` unless the
caller says to save anyway. A hit on a record the viewer may not read names its kind and its
rep, never its id or title: a rep does not learn another rep's clients by typing their numbers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.db import Database, pairs_in
from crm.dto import Actor
from crm.errors import Conflict
from crm.models import Communication, Company, Contact, ExceptionEntry, Lead
from crm.services.access import may_read
from crm.services.rows import OWNER_MODELS
from crm.services.views import rep_names
from matching.model import EventIdentities

Target = tuple[str, int]  # ("lead", 12): a record to put the new data onto
ATTACHABLE = ("lead", "contact", "company")  # what a phone or email can belong to


@dataclass(frozen=True, slots=True)
class DuplicateHit:
    """One phone / email / handle of the new record that is known already: held by a record
    (owner_type, owner_id) or on the exception list (owner_type None). `hidden`: the record is
    another rep's and the viewer may not read it, so its id and title are left out."""

    kind: str  # phone | email | telegram | whatsapp
    value: str  # the match key (E.164, ASCII email)
    owner_type: str | None
    owner_id: int | None
    owner_title: str | None
    message: str  # what a user reads: "phone +49301234567 belongs to lead #12 (Anna)"
    owner_rep: str | None = None  # the name of the holder's responsible rep
    hidden: bool = False


class DuplicateWarning(Conflict):
    """The record would duplicate known ones; save with force=True or attach_to=one hit."""

    code = "duplicate"

    def __init__(self, hits: list[DuplicateHit]) -> None:
        super().__init__("; ".join(h.message for h in hits))
        self.hits = hits


_TITLE: dict[str, Any] = {
    "lead": Lead.title,
    "contact": Contact.name,
    "company": Company.title,
}


async def holders_of(
    s: AsyncSession, targets: Iterable[Target]
) -> dict[Target, tuple[str | None, int | None]]:
    """The title and responsible rep of each of these leads, contacts and companies (one
    that does not exist is left out): what decides whether a viewer may see it (`may_read`)."""
    holders: dict[Target, tuple[str | None, int | None]] = {}
    wanted = set(targets)
    for table in ATTACHABLE:
        ids_of = sorted(oid for t, oid in wanted if t == table)
        if ids_of:
            model = OWNER_MODELS[table]
            for oid, title, responsible in await s.execute(
                select(model.id, _TITLE[table], model.responsible_id).where(model.id.in_(ids_of))
            ):
                holders[(table, oid)] = (title, responsible)
    return holders


async def hits_of(
    s: AsyncSession, ids: EventIdentities, skip: Target | None, viewer: Actor
) -> list[DuplicateHit]:
    """The hits of `ids` as `viewer` may see them; `skip` is the record edited: a value it holds
    already adds nothing, so neither it nor the other holders of that value (the lead a contact
    came from) are hits."""
    wanted = {(i.kind.value, i.value) for i in ids.matchable()}
    if not wanted:
        return []
    rows = await s.execute(
        select(
            Communication.kind,
            Communication.value,
            Communication.owner_type,
            Communication.owner_id,
        ).where(
            pairs_in(Communication.kind, Communication.value, wanted),
            Communication.owner_type.in_(ATTACHABLE),
        )
    )
    held = {r for r in rows if (r[0], r[1]) in wanted}
    wanted -= {(kind, value) for kind, value, *owner in held if tuple(owner) == skip}
    if not wanted:
        return []
    hits: list[DuplicateHit] = []
    excluded = await s.execute(
        select(ExceptionEntry.kind, ExceptionEntry.value).where(
            pairs_in(ExceptionEntry.kind, ExceptionEntry.value, wanted)
        )
    )
    for listed_kind, listed in sorted(set(excluded) & wanted):
        message = f"{listed_kind} {listed} is on the exception list: it never reaches the CRM"
        hits.append(DuplicateHit(listed_kind, listed, None, None, None, message))
    found = sorted(r for r in held if (r[0], r[1]) in wanted)
    holders = await holders_of(s, [(t, oid) for _, _, t, oid in found])
    reps = await rep_names(s, (responsible for _, responsible in holders.values()))
    for kind, value, owner_type, owner_id in found:
        held_by, responsible = holders.get((owner_type, owner_id), (None, None))
        rep = reps.get(responsible or 0)
        if may_read(viewer, responsible):
            message = f"{kind} {value} belongs to {owner_type} #{owner_id}" + (
                f" ({held_by})" if held_by else ""
            )
            hit = DuplicateHit(kind, value or "", owner_type, owner_id, held_by, message, rep)
        else:
            whose = f"another rep ({rep})" if rep else "another rep"
            message = f"{kind} {value} belongs to a {owner_type} of {whose}"
            hit = DuplicateHit(kind, value or "", owner_type, None, None, message, rep, True)
        if hit not in hits:  # two hidden holders of one rep read alike: said once
            hits.append(hit)
    return hits


async def refuse_duplicates(
    db: Database, s: AsyncSession, ids: EventIdentities, viewer: Actor, skip: Target | None = None
) -> None:
    """Within the writing transaction: lock the identities (intake and other saves of them
    wait), then refuse with `DuplicateWarning` if any is known (`skip`: the record edited),
    its hits as `viewer` may see them."""
    await db.lock_identities(s, [i.key for i in ids.matchable()])
    hits = await hits_of(s, ids, skip, viewer)
    if hits:
        raise DuplicateWarning(hits)
