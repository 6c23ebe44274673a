"""Hand-made records: duplicate warnings, force / attach, owners and rights, and the three
Bitrix24 scenarios set up by hand, each followed by an inbound event through intake."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crm.dto import Actor
from crm.errors import Forbidden, InvalidInput
from crm.facade import Crm
from crm.identity import Comms
from crm.services.handmade import (
    CompanyDraft,
    ContactDraft,
    DealDraft,
    DuplicateWarning,
    LeadDraft,
)
from crm.services.records import ContactInput
from matching.event import Channel
from tests.conftest import make_event


async def test_a_phone_on_a_lead_is_a_warning_naming_the_lead(crm: Crm) -> None:
    lead = await crm.handmade.create_lead(
        LeadDraft("Inquiry", comms=Comms(phones=("030 1234567",)))
    )
    with pytest.raises(DuplicateWarning) as err:
        await crm.handmade.create_contact(
            ContactDraft(first_name="Anna", comms=Comms(phones=("+49 30 1234567",)))
        )
    [hit] = err.value.hits
    assert (hit.owner_type, hit.owner_id, hit.value) == ("lead", lead.id, "+49301234567")
    assert str(err.value) == f"phone +49301234567 belongs to lead #{lead.id} (Inquiry)"
    # check() says the same without saving; nothing was saved by the refused call
    assert await crm.handmade.check(Comms(phones=("0049301234567",))) == err.value.hits
    assert (await crm.records.list_contacts())[1] == 0


async def test_attach_to_puts_the_data_on_the_hit_instead(crm: Crm) -> None:
    lead = await crm.handmade.create_lead(
        LeadDraft("Inquiry", comms=Comms(phones=("030 1234567",)))
    )
    saved = await crm.handmade.create_contact(
        ContactDraft(name="Anna", comms=Comms(phones=("030 1234567",), emails=("a@b.de",))),
        attach_to=("lead", lead.id),
    )
    assert (saved.record_type, saved.id, saved.attached) == ("lead", lead.id, True)
    got = await crm.leads.get(lead.id)
    assert sorted(c.value or "" for c in got.comms) == ["+49301234567", "a@b.de"]
    assert got.name == "Anna"
    assert (await crm.records.list_contacts())[1] == 0


async def test_emails_handles_and_the_exception_list_are_checked(crm: Crm) -> None:
    await crm.exceptions.add("+49 30 999999")
    c = await crm.handmade.create_contact(
        ContactDraft(name="Tom", comms=Comms(emails=("Tom@Example.com",), telegram=("@TomT",)))
    )
    hits = await crm.handmade.check(
        Comms(phones=("030 999999",), emails=("tom@example.com",), telegram=("tomt",))
    )
    assert [(h.kind, h.owner_type, h.owner_id) for h in hits] == [
        ("phone", None, None),
        ("email", "contact", c.id),
        ("telegram", "contact", c.id),
    ]
    assert "exception list" in hits[0].message


async def test_force_saves_despite_hits_and_timeline_names_the_actor(crm: Crm) -> None:
    sup = await crm.reps.add("Sue", role="supervisor")
    rita = await crm.reps.add("Rita")
    await crm.handmade.create_lead(LeadDraft("Inquiry", comms=Comms(phones=("030 1234567",))))
    actor = Actor(sup.id, "supervisor")
    saved = await crm.handmade.create_contact(
        ContactDraft(name="Anna", comms=Comms(phones=("030 1234567",)), owner_id=rita.id),
        actor,
        force=True,
    )
    assert saved.record.responsible_id == rita.id  # type: ignore[union-attr]
    [entry] = await crm.activities.timeline("contact", saved.id)
    assert (entry.action, entry.actor_id) == ("created", sup.id)


async def test_a_rep_creates_only_own_records(crm: Crm) -> None:
    rita = await crm.reps.add("Rita")
    bob = await crm.reps.add("Bob")
    me = Actor(rita.id, "rep")
    saved = await crm.handmade.create_lead(LeadDraft("Mine"), me)
    assert saved.record.responsible_id == rita.id  # type: ignore[union-attr]
    with pytest.raises(Forbidden):
        await crm.handmade.create_lead(LeadDraft("Bob's", owner_id=bob.id), me)
    bobs = await crm.handmade.create_contact(ContactDraft(name="X", owner_id=bob.id))
    with pytest.raises(Forbidden):  # nor a deal on another rep's client
        await crm.handmade.create_deal(DealDraft("D", contact_id=bobs.id), me)
    with pytest.raises(Forbidden):  # nor attach to another rep's record
        await crm.handmade.create_contact(
            ContactDraft(name="Y"), me, attach_to=("contact", bobs.id)
        )


async def test_bad_drafts_are_refused_with_a_reason(crm: Crm) -> None:
    with pytest.raises(InvalidInput, match="needs a client"):
        await crm.handmade.create_deal(DealDraft("D"))
    with pytest.raises(InvalidInput, match="needs a name"):
        await crm.handmade.create_contact(ContactDraft())
    with pytest.raises(InvalidInput, match="not a WhatsApp number"):
        await crm.handmade.create_contact(ContactDraft(name="A", comms=Comms(whatsapp=("abc",))))
    with pytest.raises(InvalidInput, match="attach_to"):
        await crm.handmade.create_lead(LeadDraft("L"), attach_to=("deal", 1))


async def test_scenario_hand_made_deal_on_a_contact_gets_the_call(crm: Crm) -> None:
    anna = await crm.handmade.create_contact(
        ContactDraft(name="Anna", comms=Comms(phones=("030 1234567",)))
    )
    deal = await crm.handmade.create_deal(
        DealDraft("Kitchen", contact_id=anna.id, amount=Decimal("1200"), currency="EUR")
    )
    r = await crm.intake.process(make_event(phones=("+49 30 1234567",)))
    # decision table: known client with an open deal → attached to the deal and the client
    assert r.outcome == "attached_deal" and r.deal_id == deal.id and r.contact_id == anna.id


async def test_scenario_company_with_two_contacts_gets_a_repeat_lead(crm: Crm) -> None:
    saved = await crm.handmade.create_company(
        CompanyDraft(
            "Acme GmbH",
            contacts=(
                ContactDraft(name="Anna", comms=Comms(phones=("030 1111111",))),
                ContactDraft(name="Bernd", comms=Comms(emails=("bernd@acme.de",))),
            ),
        )
    )
    assert len(saved.contact_ids) == 2
    bernd = await crm.records.get_contact(saved.contact_ids[1])
    assert bernd.company_id == saved.id
    r = await crm.intake.process(make_event(channel=Channel.EMAIL, emails=("bernd@acme.de",)))
    # known client, nothing open, classic mode, repeat sales on → new repeat lead on the client
    assert r.outcome == "new_repeat_lead" and r.company_id == saved.id
    lead = await crm.leads.get(r.lead_id or 0)
    assert lead.is_return_customer and lead.contact_id == bernd.id


async def test_scenario_contact_whose_phone_is_on_an_open_lead(crm: Crm) -> None:
    lead = await crm.handmade.create_lead(LeadDraft("Old", comms=Comms(phones=("030 1234567",))))
    with pytest.raises(DuplicateWarning):
        await crm.handmade.create_contact(
            ContactDraft(name="Anna", comms=Comms(phones=("030 1234567",)))
        )
    anna = await crm.handmade.create_contact(
        ContactDraft(name="Anna", comms=Comms(phones=("030 1234567",))), force=True
    )
    r = await crm.intake.process(make_event(phones=("030 1234567",)))
    # Leadbot (unlike Bitrix24, R3.12): the call joins the open lead, which gets the contact
    assert r.outcome == "attached_lead" and r.lead_id == lead.id
    assert (await crm.leads.get(lead.id)).contact_id == anna.id


async def test_an_edit_re_adding_the_records_own_value_is_no_duplicate(crm: Crm) -> None:
    """A contact converted from a lead shares the lead's phone: typing it again on the contact
    adds nothing, so it is no hit (nor is the lead); a phone another record holds is."""
    lead = await crm.handmade.create_lead(LeadDraft("Anna", comms=Comms(phones=("030 1234567",))))
    other = await crm.handmade.create_lead(LeadDraft("Bob", comms=Comms(phones=("030 7654321",))))
    anna = (await crm.leads.convert(lead.id, into=("contact",))).contact_id
    assert anna is not None
    own = ContactInput(first_name="Anna", phones=("+49 30 1234567",))
    assert await crm.handmade.check(Comms(phones=own.phones), ignore=("contact", anna)) == []
    await crm.records.update_contact(anna, own, check_duplicates=True)
    assert (await crm.records.get_contact(anna)).phones == ["+49301234567"]
    both = ContactInput(phones=("030 1234567", "030 7654321"))
    with pytest.raises(DuplicateWarning) as err:
        await crm.records.update_contact(anna, both, check_duplicates=True)
    assert [(h.owner_type, h.owner_id) for h in err.value.hits] == [("lead", other.id)]
