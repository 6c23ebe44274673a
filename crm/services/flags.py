"""Repeat-deal flags, computed per client exactly like Bitrix24 (R4.3-R4.4).

The client is the company when the deal has one, else the contact (counting only that
contact's deals without a company). Once the client has a won deal, every other deal of the
client is a *repeat deal* and none is a *repeated inquiry*; the earliest won deal stays
not-repeat. Without a won deal, a deal that came from a repeat lead is a repeated inquiry.
The rule is retroactive, and reopening or losing the won deal recomputes it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Deal, Lead


async def recompute_client_flags(
    session: AsyncSession, contact_id: int | None, company_id: int | None
) -> None:
    if company_id is not None:
        where = Deal.company_id == company_id
    elif contact_id is not None:
        where = (Deal.contact_id == contact_id) & Deal.company_id.is_(None)
    else:
        return
    await session.flush()
    deals = list(await session.scalars(select(Deal).where(where).order_by(Deal.id)))
    won = [d.id for d in deals if d.stage_semantic == "success"]
    repeat_leads: set[int] = set()
    lead_ids = {d.lead_id for d in deals if d.lead_id is not None}
    if lead_ids:
        repeat_leads = set(
            await session.scalars(
                select(Lead.id).where(Lead.id.in_(lead_ids), Lead.is_return_customer.is_(True))
            )
        )
    first_won = min(won) if won else None
    for deal in deals:
        if first_won is not None:
            deal.is_return_customer = deal.id != first_won
            deal.is_repeated_approach = False
        else:
            deal.is_return_customer = False
            deal.is_repeated_approach = deal.origin_repeat or deal.lead_id in repeat_leads
