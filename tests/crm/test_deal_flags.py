"""Repeat-deal flags through win, reopen and lose; lead conversion (ordinary and repeat)."""

from __future__ import annotations

from crm.facade import Crm
from crm.services.leads import LeadInput
from crm.services.listing import ListFilter
from crm.services.records import ContactInput


async def test_first_win_makes_every_other_deal_of_the_client_a_repeat_deal(crm: Crm) -> None:
    anna = await crm.records.create_contact(
        ContactInput(name="Anna Meier", phones=("030 1234567",))
    )
    d1 = await crm.deals.create("First order", contact_id=anna.id)
    d2 = await crm.deals.create("Second inquiry", contact_id=anna.id)
    assert not (await crm.deals.get(d1.id)).is_return_customer
    assert not (await crm.deals.get(d2.id)).is_return_customer

    await crm.deals.win(d2.id)
    # Retroactive: the earlier open deal becomes a repeat deal; the earliest won one stays not.
    assert (await crm.deals.get(d1.id)).is_return_customer
    assert not (await crm.deals.get(d2.id)).is_return_customer
    d3 = await crm.deals.create("Third", contact_id=anna.id)
    assert d3.is_return_customer and not d3.is_repeated_approach

    # Reopening the only won deal takes the flags back.
    await crm.deals.reopen(d2.id)
    for d in (d1, d2, d3):
        assert not (await crm.deals.get(d.id)).is_return_customer

    await crm.deals.win(d1.id)
    await crm.deals.win(d3.id)
    assert not (await crm.deals.get(d1.id)).is_return_customer  # earliest won
    assert (await crm.deals.get(d3.id)).is_return_customer
    # Losing the earliest win moves "first purchase" to the next won deal.
    await crm.deals.lose(d1.id)
    assert (await crm.deals.get(d1.id)).is_return_customer
    assert not (await crm.deals.get(d3.id)).is_return_customer


async def test_company_is_the_client_when_the_deal_has_one(crm: Crm) -> None:
    acme = await crm.records.create_company("ACME GmbH")
    a = await crm.records.create_contact(ContactInput(name="A", company_id=acme.id))
    b = await crm.records.create_contact(ContactInput(name="B", company_id=acme.id))
    d_a = await crm.deals.create("via A", contact_id=a.id, company_id=acme.id)
    d_b = await crm.deals.create("via B", contact_id=b.id, company_id=acme.id)
    solo = await crm.deals.create("A privately", contact_id=a.id)
    await crm.deals.win(d_a.id)
    assert (await crm.deals.get(d_b.id)).is_return_customer
    assert not (await crm.deals.get(solo.id)).is_return_customer  # other client: the contact


async def test_ordinary_lead_converts_into_contact_and_deal(crm: Crm) -> None:
    lead = await crm.leads.create(
        LeadInput(
            title="Website inquiry",
            name="Bob Stone",
            phones=("+49 171 1234567",),
            emails=("Bob@Example.com",),
        )
    )
    result = await crm.leads.convert(lead.id)
    assert result.lead.status_semantic == "success"
    assert result.contact_id is not None and result.deal is not None
    contact = await crm.records.get_contact(result.contact_id)
    assert contact.name == "Bob Stone"
    assert contact.phones == ["+491711234567"] and contact.emails == ["bob@example.com"]
    assert result.deal.contact_id == contact.id and result.deal.lead_id == lead.id
    assert not result.deal.is_repeated_approach


async def test_repeat_lead_converts_only_into_a_deal_and_keeps_its_client(crm: Crm) -> None:
    anna = await crm.records.create_contact(ContactInput(name="Anna"))
    lead = await crm.leads.create(LeadInput(title="Again", contact_id=anna.id))
    assert lead.is_return_customer
    result = await crm.leads.convert(lead.id, into=("contact", "company", "deal"))
    assert result.contact_id == anna.id and result.company_id is None
    assert result.deal is not None and result.deal.contact_id == anna.id
    assert result.deal.is_repeated_approach  # from a repeat lead, no won deal yet
    _contacts, total = await crm.records.list_contacts()
    assert total == 1
    # Once the client buys, the repeated inquiry turns into a repeat deal.
    older = await crm.deals.create("Old one", contact_id=anna.id)
    await crm.deals.win(older.id)
    d = await crm.deals.get(result.deal.id)
    assert d.is_return_customer and not d.is_repeated_approach


async def test_leads_page_and_filter(crm: Crm) -> None:
    rep = await crm.reps.add("Rita")
    for i in range(7):
        await crm.leads.create(
            LeadInput(
                title=f"L{i}",
                source="CALL" if i % 2 else "EMAIL",
                responsible_id=rep.id if i < 3 else None,
            )
        )
    page, total = await crm.leads.page(ListFilter(limit=3))
    assert total == 7 and [x.title for x in page] == ["L6", "L5", "L4"]
    page, total = await crm.leads.page(ListFilter(limit=3, offset=6))
    assert [x.title for x in page] == ["L0"]
    _, total = await crm.leads.page(ListFilter(source="CALL"))
    assert total == 3
    _, total = await crm.leads.page(ListFilter(responsible_id=rep.id))
    assert total == 3
    _, total = await crm.leads.page(ListFilter(unassigned=True, source="EMAIL"))
    assert total == 2
