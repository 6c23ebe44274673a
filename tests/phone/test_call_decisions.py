"""What a call is attached to and why, sent as real webhooks: the company of the caller, the
later reports of one call, a caller whose earlier lead was junked."""

from __future__ import annotations

from crm.dto import EventView
from crm.services.records import ContactInput
from tests.phone.conftest import PhoneClient, add_rep

ANNA = "+49 30 5550101"


async def _events(phone: PhoneClient) -> list[EventView]:
    await phone.settle()
    events, _ = await phone.service.crm.events.page(channel="call")
    return sorted(events, key=lambda e: e.id)


async def test_a_call_from_a_contact_goes_to_her_companys_open_deal(phone: PhoneClient) -> None:
    """Acme holds no phone itself; Anna, who works there, calls. Acme's open deal wins over
    Anna's own (newer) one, as in Bitrix24."""
    rep = await add_rep(phone, "Rita")
    crm = phone.service.crm
    acme = await crm.records.create_company("Acme GmbH", responsible_id=rep)
    anna = await crm.records.create_contact(
        ContactInput(name="Anna Meier", phones=(ANNA,), company_id=acme.id, responsible_id=rep)
    )
    acme_deal = await crm.deals.create("Acme rollout", company_id=acme.id)
    anna_deal = await crm.deals.create("Anna's own", contact_id=anna.id)

    await phone.answered_call("acme-1", ANNA)

    first, *later = await _events(phone)
    assert (first.outcome, first.deal_id) == ("attached_deal", acme_deal.id)
    assert (first.company_id, first.contact_id) == (acme.id, anna.id)
    assert first.reason == (
        f"known contact Anna Meier #{anna.id} of company Acme GmbH #{acme.id}, "
        f"company Acme GmbH #{acme.id}'s open deal #{acme_deal.id} → attached"
    )
    [call] = await phone.activities("call")
    bindings = (await crm.activities.get(call.id)).bindings
    assert ("deal", acme_deal.id) in bindings and ("deal", anna_deal.id) not in bindings
    assert await phone.leads() == []  # no repeat lead for a client with an open deal
    # The later reports of the same call say so, in call words.
    assert [e.reason for e in later] == [f"same call as deal #{acme_deal.id} → attached"] * 2


async def test_the_later_reports_of_a_call_are_the_same_call(phone: PhoneClient) -> None:
    await phone.answered_call("new-1", "+49 40 5550102")
    first, *later = await _events(phone)  # settles first
    [lead] = await phone.leads()
    assert (first.outcome, first.reason) == ("new_lead", "no match → new lead")
    assert [(e.lead_id, e.reason) for e in later] == [
        (lead.id, f"same call as lead #{lead.id} → attached")
    ] * 2
    assert all("thread" not in e.reason for e in later)


async def test_a_caller_whose_lead_was_junked_is_told_why_a_new_lead_opened(
    phone: PhoneClient,
) -> None:
    number = "+49 40 5550103"
    await phone.missed_call("junk-1", number)
    await phone.settle()
    [junked] = await phone.leads()
    await phone.service.crm.leads.junk(junked.id, "wrong number")

    await phone.missed_call("junk-2", number)
    events = await _events(phone)
    leads = await phone.leads()
    assert [lead.id for lead in leads] == [junked.id, junked.id + 1]
    [again] = [e for e in events if e.external_id.startswith("junk-2") and e.outcome == "new_lead"]
    assert again.reason == f"lead #{junked.id} was junked → new lead"
    assert again.lead_id == leads[1].id
