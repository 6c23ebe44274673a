"""The column values of a new lead, contact, company or deal, built in one place for every
path that creates one (intake, conversion, the create use cases). A row dict serves both
an ORM object (`Lead(**row)`) and a batch insert (`RowSink.add(Lead, **row)`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from crm.config import CrmConfig
from crm.models import Stage


def lead_row(
    config: CrmConfig,
    *,
    title: str,
    source: str,
    is_return_customer: bool,
    name: str | None,
    company_title: str | None,
    contact_id: int | None,
    company_id: int | None,
    responsible_id: int | None,
    now: datetime,
    id: int | None = None,
    comments: str | None = None,
    utm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A new lead in the first configured status."""
    status = config.lead_statuses[0]
    return {
        **_given_id(id),
        "comments": comments,
        "utm": utm,
        "title": title,
        "status": status.code,
        "status_semantic": status.semantic,
        "source": source,
        "is_return_customer": is_return_customer,
        "name": name,
        "company_title": company_title,
        "contact_id": contact_id,
        "company_id": company_id,
        "responsible_id": responsible_id,
        "created_at": now,
        "modified_at": now,
    }


def contact_row(
    *,
    name: str,
    company_id: int | None,
    responsible_id: int | None,
    now: datetime,
    id: int | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    comments: str | None = None,
) -> dict[str, Any]:
    """A new contact."""
    return {
        **_given_id(id),
        "name": name,
        "first_name": first_name,
        "last_name": last_name,
        "comments": comments,
        "company_id": company_id,
        "responsible_id": responsible_id,
        "created_at": now,
        "modified_at": now,
    }


def company_row(
    *, title: str, responsible_id: int | None, now: datetime, id: int | None = None
) -> dict[str, Any]:
    """A new company."""
    return {
        **_given_id(id),
        "title": title,
        "responsible_id": responsible_id,
        "created_at": now,
        "modified_at": now,
    }


def deal_row(
    *,
    title: str,
    stage: Stage,
    currency: str,
    contact_id: int | None,
    company_id: int | None,
    responsible_id: int | None,
    source: str | None,
    now: datetime,
    amount: Decimal | None = None,
    lead_id: int | None = None,
    origin_repeat: bool = False,
    id: int | None = None,
) -> dict[str, Any]:
    """A new deal at `stage` (closed now when that stage is not a working one)."""
    return {
        **_given_id(id),
        "lead_id": lead_id,
        "origin_repeat": origin_repeat,
        "title": title,
        "pipeline_id": stage.pipeline_id,
        "stage_id": stage.id,
        "stage_semantic": stage.semantic,
        "amount": amount,
        "currency": currency,
        "contact_id": contact_id,
        "company_id": company_id,
        "responsible_id": responsible_id,
        "source": source,
        "created_at": now,
        "modified_at": now,
        "closed_at": now if stage.semantic != "process" else None,
    }


def _given_id(id: int | None) -> dict[str, int]:
    """A reserved id (intake takes ids in advance); none lets the database pick one."""
    return {} if id is None else {"id": id}
