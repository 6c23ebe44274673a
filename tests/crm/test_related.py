"""What a record page needs beside its history: the linked records under the actor's rights
(crm.related), taking a phone or email off a record (records.remove_comm), and telling a
rep that someone else worked their lead or deal (outbox.tell_holder)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm.dto import Actor
from crm.errors import Forbidden, InvalidInput, NotFound
from crm.facade import Crm
from crm.services.leads import LeadInput
from crm.services.related import Linked
from tests.conftest import make_event


def _named(links: list[Linked]) -> list[tuple[str, int, str | None, str]]:
    return [(x.kind, x.id, x.title, x.role) for x in links]


async def test_links_follow_a_conversion_both_ways(crm: Crm) -> None:
    rita = await crm.reps.add("Rita Rep")
    me = Actor(rita.id, "rep")
    lead = await crm.leads.create(
        LeadInput("Chairs", name="Bob", company_title="Bob & Sons", responsible_id=rita.id)
    )
    done = await crm.leads.convert(lead.id, me, into=("contact", "company", "deal"))
    assert done.deal and done.contact_id and done.company_id
    deal_id, contact_id, company_id = done.deal.id, done.contact_id, done.company_id

    assert _named(await crm.related.of("lead", lead.id, me)) == [
        ("company", company_id, "Bob & Sons", "client"),
        ("contact", contact_id, "Bob", "client"),
        ("deal", deal_id, "Chairs", "converted into"),
    ]
    assert _named(await crm.related.of("deal", deal_id, me)) == [
        ("company", company_id, "Bob & Sons", "client"),
        ("contact", contact_id, "Bob", "client"),
        ("lead", lead.id, "Chairs", "came from"),
    ]
    assert _named(await crm.related.of("contact", contact_id, me)) == [
        ("company", company_id, "Bob & Sons", "client"),
        ("lead", lead.id, "Chairs", "lead"),
        ("deal", deal_id, "Chairs", "deal"),
    ]
    company = await crm.related.of("company", company_id, me)
    assert _named(company)[0] == ("contact", contact_id, "Bob", "contact")
    [as_deal] = [x for x in company if x.kind == "deal"]
    assert (as_deal.state, as_deal.is_open) == ("New", True)


async def test_a_repeat_lead_lists_the_clients_earlier_records_and_hides_other_reps(
    crm: Crm,
) -> None:
    rita = await crm.reps.add("Rita Rep")
    paul = await crm.reps.add("Paul Other")
    first = await crm.leads.create(LeadInput("First", name="Anna", responsible_id=paul.id))
    done = await crm.leads.convert(first.id, into=("contact", "deal"))
    again = await crm.leads.create(
        LeadInput("Again", contact_id=done.contact_id, responsible_id=rita.id)
    )
    links = await crm.related.of("lead", again.id, Actor(rita.id, "rep"))
    # Paul's contact, lead and deal: named by type and number only.
    assert [(x.kind, x.title, x.role) for x in links] == [
        ("contact", None, "client"),
        ("lead", None, "client's lead"),
        ("deal", None, "client's deal"),
    ]
    sees_all = await crm.related.of("lead", again.id, Actor(None))
    assert [x.title for x in sees_all] == ["Anna", "First", "First"]
    with pytest.raises(Forbidden, match="belongs to another rep"):
        await crm.related.of("lead", first.id, Actor(rita.id, "rep"))
    with pytest.raises(InvalidInput, match="unknown record type"):
        await crm.related.of("ticket", 1, Actor(None))


async def test_removing_a_phone_stops_it_matching(crm: Crm) -> None:
    r = await crm.intake.process(make_event(phones=("030 1112223",), emails=("x@example.org",)))
    lead_id = r.lead_id or 0
    await crm.records.remove_comm("lead", lead_id, "phone", "+49301112223")
    lead = await crm.leads.get(lead_id)
    assert [c.kind for c in lead.comms] == ["email"]
    timeline = await crm.activities.timeline("lead", lead_id)
    assert timeline[-1].after == {"removed": "phone +49301112223"}
    # The same number now makes a new lead instead of attaching to this one.
    again = await crm.intake.process(make_event(phones=("030 1112223",)))
    assert again.lead_id not in (None, lead_id)
    with pytest.raises(NotFound, match="has no phone"):
        await crm.records.remove_comm("lead", lead_id, "phone", "+49301112223")
    with pytest.raises(InvalidInput, match="no phones or emails of its own"):
        await crm.records.remove_comm("deal", 1, "phone", "+49301112223")


async def test_the_holder_hears_what_someone_else_did(crm: Crm) -> None:
    rita = await crm.reps.add("Rita Rep", telegram_user_id=1001)
    sam = await crm.reps.add("Sam Supervisor", role="supervisor", telegram_user_id=1002)
    nobody = await crm.reps.add("No Telegram")
    lead = await crm.leads.create(LeadInput("Quote", responsible_id=rita.id))
    quiet = await crm.leads.create(LeadInput("Quiet", responsible_id=nobody.id))
    assert await crm.outbox.tell_holder("lead", lead.id, sam.id, "💬 call her")
    assert not await crm.outbox.tell_holder("lead", lead.id, rita.id, "her own")
    assert not await crm.outbox.tell_holder("lead", quiet.id, sam.id, "no Telegram")
    assert not await crm.outbox.tell_holder("contact", 1, sam.id, "not a lead or deal")
    [told] = await crm.outbox.due(datetime.now(UTC) + timedelta(minutes=1))
    assert (told.rep_id, told.kind) == (rita.id, "changed")
    assert told.payload == {"lead_id": lead.id, "by_rep_id": sam.id, "what": "💬 call her"}
