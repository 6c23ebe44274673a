"""Intake for imports: contact imports never create leads or deals; previews write nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crm.config import CrmConfig
from crm.db import Database
from crm.facade import Crm
from crm.models import Company, Contact, Deal, InboundEventLog, Lead
from crm.services.records import ContactInput
from matching.event import Channel, InboundEvent
from matching.model import CrmMode, MatchSettings
from tests.channels.service_helpers import count
from tests.conftest import make_event


def imported(row: int, as_kind: str = "contact", **fields: Any) -> InboundEvent:
    return make_event(
        channel=Channel.IMPORT,
        external_id=f"file:{row}",
        occurred_at=datetime.now(UTC),
        source="IMPORT",
        meta={"import_as": as_kind, "row": row},
        **fields,
    )


async def test_contact_import_creates_a_contact_with_company_and_no_lead(crm: Crm) -> None:
    event = imported(
        2,
        first_name="Jürgen",
        last_name="Müller",
        company_name="Müller GmbH",
        phones=("030 1234567",),
        emails=("j@mueller.de",),
    )
    result = await crm.intake.process(event)
    assert result.outcome == "new_contact"
    assert result.reason == "no match → new contact (contact import)"
    contact = await crm.records.get_contact(result.contact_id or 0)
    assert contact.name == "Jürgen Müller" and contact.company_title == "Müller GmbH"
    assert sorted(contact.phones + contact.emails) == ["+49301234567", "j@mueller.de"]
    assert await count(crm, Lead) == 0 and await count(crm, Deal) == 0
    assert await count(crm, Company) == 1


async def test_contact_import_merges_into_a_known_client_without_a_repeat_lead(crm: Crm) -> None:
    known = await crm.records.create_contact(ContactInput(name="Anna", phones=("+4930555",)))
    event = imported(3, phones=("030 555",), emails=("anna@example.de",))
    result = await crm.intake.process(event)
    assert result.outcome == "attached_client" and result.contact_id == known.id
    assert "details merged into the client (contact import)" in result.reason
    contact = await crm.records.get_contact(known.id)
    assert contact.emails == ["anna@example.de"]
    assert await count(crm, Lead) == 0 and await count(crm, Contact) == 1


async def test_contact_import_of_a_person_with_an_open_lead_merges_into_that_lead(
    crm: Crm,
) -> None:
    call = await crm.intake.process(make_event(phones=("+49 30 777",)))
    result = await crm.intake.process(imported(4, phones=("030 777",), emails=("x@y.de",)))
    assert result.outcome == "attached_lead" and result.lead_id == call.lead_id
    assert await count(crm, Contact) == 0 and await count(crm, Lead) == 1


async def test_contact_import_in_simple_mode_makes_no_deal(db: Database) -> None:
    crm = Crm(db, CrmConfig(match=MatchSettings(crm_mode=CrmMode.SIMPLE)))
    await crm.prepare()
    result = await crm.intake.process(imported(5, phones=("+49 40 123456",)))
    assert result.outcome == "new_contact"
    assert await count(crm, Deal) == 0 and await count(crm, Contact) == 1
    # A lead import of someone else in simple mode still gets its deal.
    lead_row = imported(6, as_kind="lead", phones=("+49 40 654321",))
    assert (await crm.intake.process(lead_row)).outcome == "new_deal"


async def test_preview_tells_the_outcome_and_writes_nothing(crm: Crm) -> None:
    await crm.exceptions.add("+49 30 999", "our own office")
    excepted = imported(7, as_kind="lead", phones=("030 999",))
    fresh = imported(8, as_kind="lead", phones=("030 888",))
    assert (await crm.intake.preview(excepted)).outcome == "ignored"
    preview = await crm.intake.preview(fresh)
    assert (preview.outcome, preview.reason) == ("new_lead", "no match → new lead")
    assert await count(crm, InboundEventLog) == 0 and await count(crm, Lead) == 0

    done = await crm.intake.process(fresh)
    again = await crm.intake.preview(fresh)
    assert again.outcome == "duplicate" and again.event_log_id == done.event_log_id
    same_person = imported(9, as_kind="contact", phones=("+4930888",))
    matched = await crm.intake.preview(same_person)
    assert matched.outcome == "attached_lead" and matched.lead_id == done.lead_id
    assert await count(crm, InboundEventLog) == 1
