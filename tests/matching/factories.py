"""Small builders for matcher value objects, so test tables stay readable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from matching.event import Channel, InboundEvent
from matching.model import (
    ClientCandidate,
    ClientKind,
    CommKind,
    DealRef,
    EventIdentities,
    Identity,
    LeadRef,
    PhoneNumber,
)

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
PHONE = "+49301234567"
PHONE_2 = "+491711234567"
EMAIL = "anna@example.com"
PHONE_ID = Identity(CommKind.PHONE, PHONE)
PHONE_2_ID = Identity(CommKind.PHONE, PHONE_2)
EMAIL_ID = Identity(CommKind.EMAIL, EMAIL)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def event(**fields: object) -> InboundEvent:
    base: dict[str, object] = {
        "channel": Channel.CALL,
        "external_id": "call-1",
        "occurred_at": T0,
        "phones": (PHONE,),
    }
    base.update(fields)
    return InboundEvent(**base)  # type: ignore[arg-type]


def identities(
    phones: tuple[str, ...] = (PHONE,),
    emails: tuple[str, ...] = (),
    *,
    invalid: tuple[str, ...] = (),
    hints: tuple[str, ...] = (),
    handles: tuple[Identity, ...] = (),
) -> EventIdentities:
    return EventIdentities(
        phones=tuple(PhoneNumber(p, p) for p in phones)
        + tuple(PhoneNumber(r, None) for r in invalid),
        emails=emails,
        handles=handles,
        hint_phones=tuple(PhoneNumber(p, p) for p in hints),
    )


def deal(
    id: int,
    *,
    modified: float = 0,
    created: float = 0,
    responsible: int | None = 50,
    contact: int | None = None,
    company: int | None = None,
) -> DealRef:
    return DealRef(
        id=id,
        title=f"Deal {id}",
        modified_at=day(modified),
        created_at=day(created),
        responsible_id=responsible,
        contact_id=contact,
        company_id=company,
    )


def lead(
    id: int,
    *,
    is_open: bool = True,
    repeat: bool = False,
    modified: float = 0,
    created: float = 0,
    responsible: int | None = 60,
    contact: int | None = None,
    company: int | None = None,
    via: tuple[Identity, ...] = (PHONE_ID,),
    junked: bool = False,
) -> LeadRef:
    return LeadRef(
        id=id,
        title=f"Lead {id}",
        is_open=is_open,
        is_return_customer=repeat,
        modified_at=day(modified),
        created_at=day(created),
        responsible_id=responsible,
        contact_id=contact,
        company_id=company,
        matched_by=via,
        junked=junked,
    )


def client(
    kind: ClientKind,
    id: int,
    name: str,
    *,
    company: int | None = None,
    deals: tuple[DealRef, ...] = (),
    repeat_leads: tuple[LeadRef, ...] = (),
    via: tuple[Identity, ...] = (PHONE_ID,),
    hit: int = 0,
    responsible: int | None = 7,
    active: bool = True,
) -> ClientCandidate:
    return ClientCandidate(
        kind=kind,
        id=id,
        name=name,
        responsible_id=responsible,
        responsible_active=active,
        company_id=company,
        open_deals=deals,
        open_repeat_leads=repeat_leads,
        matched_by=via,
        hit_order=hit,
    )


def contact(id: int, name: str = "Anna Meier", **kw: object) -> ClientCandidate:
    return client(ClientKind.CONTACT, id, name, **kw)  # type: ignore[arg-type]


def company(id: int, name: str = "Acme GmbH", **kw: object) -> ClientCandidate:
    return client(ClientKind.COMPANY, id, name, **kw)  # type: ignore[arg-type]
