"""Collect the normalized identities an inbound event carries."""

from __future__ import annotations

from collections.abc import Iterable

from matching.channels import handle_kinds
from matching.event import Handle, InboundEvent
from matching.model import CommKind, EventIdentities, Identity, PhoneNumber
from matching.normalize import is_withheld, normalize_email, normalize_phone

_HANDLE_KINDS = handle_kinds()  # the registry's messenger handles


def _phones(raws: Iterable[str], region: str) -> tuple[PhoneNumber, ...]:
    """Normalized phones, withheld placeholders dropped, one entry per number."""
    seen: dict[str, PhoneNumber] = {}
    for raw in raws:
        if is_withheld(raw):
            continue
        phone = normalize_phone(raw, region)
        # Unparseable numbers are kept (raw, for the record) keyed by their stripped text.
        seen.setdefault(phone.e164 or f"raw:{raw.strip()}", phone)
    return tuple(seen.values())


def _handle_identity(handle: Handle) -> Identity | None:
    user_id = handle.id.strip()
    if not user_id:
        return None
    kind = handle.kind.strip().casefold()
    comm = _HANDLE_KINDS.get(kind)
    if comm is None:
        return Identity(CommKind.OTHER, f"{kind}:{user_id}")
    return Identity(comm, user_id)


def event_identities(event: InboundEvent, default_region: str) -> EventIdentities:
    """Everything `event` says about its sender, normalized and de-duplicated in order."""
    region = event.phone_region or default_region
    phones = _phones(event.phones, region) if event.phones else ()
    own = {p.e164 for p in phones if p.e164}
    # Hints only help matching: unusable ones and repeats of the event's own phones are noise.
    # (Most events carry one kind of identity: the others' empty inputs are skipped.)
    hints = (
        tuple(
            p
            for p in _phones(event.hint_phones, region)
            if p.e164 is not None and p.e164 not in own
        )
        if event.hint_phones
        else ()
    )
    emails = (
        tuple(dict.fromkeys(e for e in map(normalize_email, event.emails) if e is not None))
        if event.emails
        else ()
    )
    handles = (
        tuple(dict.fromkeys(i for i in map(_handle_identity, event.handles) if i is not None))
        if event.handles
        else ()
    )
    return EventIdentities(phones=phones, emails=emails, handles=handles, hint_phones=hints)
