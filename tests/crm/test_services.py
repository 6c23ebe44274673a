"""The CRM use cases a rep or the API calls, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select

from crm.dto import SYSTEM, Actor
from crm.errors import Conflict, Forbidden, InvalidInput, NotFound
from crm.facade import Crm
from crm.models import OutboxMessage
from crm.services.escalation import Followups
from crm.services.exceptions import exception_hits
from crm.services.handmade import LeadDraft
from crm.services.leads import LeadInput
from crm.services.listing import ListFilter
from crm.services.records import ContactInput
from matching.model import CommKind, Identity


async def test_contacts_and_companies_are_created_updated_and_merged(crm: Crm) -> None:
    acme = await crm.records.create_company("ACME GmbH", phones=("030 999999",))
    anna = await crm.records.create_contact(
        ContactInput(
            first_name="Anna", last_name="Meier", company_id=acme.id, emails=("Anna@ACME.de",)
        )
    )
    assert anna.name == "Anna Meier" and anna.company_title == "ACME GmbH"
    updated = await crm.records.update_contact(
        anna.id, ContactInput(phones=("0171 1234567",), emails=("anna@acme.de",))
    )
    # New phone added, the same email (other case) not duplicated, the name kept.
    assert updated.emails == ["anna@acme.de"] and updated.phones == ["+491711234567"]
    assert updated.name == "Anna Meier"
    company = await crm.records.get_company(acme.id)
    assert company.contact_ids == [anna.id] and [c.value for c in company.comms] == ["+4930999999"]
    renamed = await crm.records.update_company(acme.id, title="ACME AG")
    assert renamed.title == "ACME AG"
    history = await crm.activities.timeline("contact", anna.id)
    assert [t.action for t in history] == ["created", "updated"]
    with pytest.raises(InvalidInput):
        await crm.records.create_contact(ContactInput())
    with pytest.raises(NotFound):
        await crm.records.create_contact(ContactInput(name="X", company_id=999))


async def test_lead_status_junk_reopen_and_assignment(crm: Crm) -> None:
    rita = await crm.reps.add("Rita")
    boss = await crm.reps.add("Bea", role="supervisor")
    lead = await crm.leads.create(LeadInput(title="Inquiry", phones=("+4930111",)))
    moved = await crm.leads.change_status(lead.id, "PROCESSED")
    assert moved.status == "PROCESSED" and moved.status_semantic == "process"
    with pytest.raises(InvalidInput):
        await crm.leads.change_status(lead.id, "NOPE")
    with pytest.raises(InvalidInput):  # success only through conversion
        await crm.leads.change_status(lead.id, "CONVERTED")
    with pytest.raises(Forbidden):  # a plain rep cannot reassign
        await crm.leads.assign(lead.id, rita.id, Actor(rita.id, "rep"))
    assigned = await crm.leads.assign(lead.id, rita.id, Actor(boss.id, "supervisor"))
    assert assigned.responsible_id == rita.id and assigned.responsible_name == "Rita"
    junk = await crm.leads.junk(lead.id, "wrong number", Actor(rita.id, "rep"))
    assert junk.status == "JUNK" and junk.junk_reason == "wrong number"
    with pytest.raises(Conflict):
        await crm.leads.convert(lead.id)
    reopened = await crm.leads.reopen(lead.id)
    assert reopened.status == "NEW" and reopened.junk_reason is None
    actions = [t.action for t in await crm.activities.timeline("lead", lead.id)]
    assert actions == ["created", "status", "assigned", "junk", "reopened"]


async def test_every_assignment_has_the_same_rights_history_and_notice(crm: Crm) -> None:
    """Leads had an assignment of their own, and only the bot and the console told the new
    rep (after the service call): an API or Bitrix24 REST assignment told nobody. Now every
    record's assignment is one: the same rights and timeline, the new rep told in the same
    transaction whoever asks; a lead a person gives counts as taken, one the system gives
    does not (as before)."""
    boss = await crm.reps.add("Bea", role="supervisor")
    rita, otto = await crm.reps.add("Rita"), await crm.reps.add("Otto")
    for actor in (Actor(boss.id, "supervisor"), SYSTEM):
        lead = await crm.leads.create(LeadInput(title="Inquiry"))
        deal = await crm.deals.create("Order")
        with pytest.raises(Forbidden, match=r"^only a supervisor can reassign a lead$"):
            await crm.leads.assign(lead.id, rita.id, Actor(rita.id, "rep"))
        with pytest.raises(Forbidden, match=r"^only a supervisor can reassign a deal$"):
            await crm.deals.assign(deal.id, rita.id, Actor(rita.id, "rep"))
        given = await crm.leads.assign(lead.id, rita.id, actor)
        assert given.responsible_id == rita.id
        assert (given.taken_at is not None) == (actor.rep_id is not None)
        assert (await crm.deals.assign(deal.id, rita.id, actor)).responsible_id == rita.id
        await crm.leads.assign(lead.id, rita.id, actor)  # to the rep who has it: no notice
        await crm.leads.assign(lead.id, otto.id, actor)
        for kind, ident in (("lead", lead.id), ("deal", deal.id)):
            entries = await crm.activities.timeline(kind, ident)
            assert [t.action for t in entries][-1] == "assigned"
        async with crm.db.read() as s:
            told = [
                (m.rep_id, m.kind, m.payload)
                for m in await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
            ]
        by = actor.rep_id
        assert told == [
            (rita.id, "assigned", {"lead_id": lead.id, "by_rep_id": by}),
            (rita.id, "assigned", {"deal_id": deal.id, "by_rep_id": by}),
            (otto.id, "assigned", {"lead_id": lead.id, "by_rep_id": by}),
        ]
        async with crm.db.transaction() as s:
            await s.execute(delete(OutboxMessage))
    # A supervisor giving a lead to themselves is not told.
    mine = await crm.leads.create(LeadInput(title="Mine"))
    await crm.leads.assign(mine.id, boss.id, Actor(boss.id, "supervisor"))
    async with crm.db.read() as s:
        assert list(await s.scalars(select(OutboxMessage))) == []


async def test_nothing_is_given_to_a_rep_who_left_or_never_was(crm: Crm) -> None:
    gone = await crm.reps.add("Rita")
    await crm.reps.deactivate(gone.id)
    lead = await crm.leads.create(LeadInput(title="Inquiry"))
    deal = await crm.deals.create("Order")
    contact = await crm.records.create_contact(ContactInput(name="Anna"))
    company = await crm.records.create_company("Acme")
    gives = [  # a lead, a deal, a contact and a company (assigned or edited), a lead typed in
        # by hand, an API token
        lambda rep: crm.leads.assign(lead.id, rep),
        lambda rep: crm.deals.assign(deal.id, rep),
        lambda rep: crm.records.assign_contact(contact.id, rep),
        lambda rep: crm.records.assign_company(company.id, rep),
        lambda rep: crm.records.update_contact(contact.id, ContactInput(responsible_id=rep)),
        lambda rep: crm.records.update_company(company.id, responsible_id=rep),
        lambda rep: crm.handmade.create_lead(LeadDraft("By hand", owner_id=rep)),
        lambda rep: crm.tokens.create("for Rita", rep_id=rep),
    ]
    for give in gives:
        with pytest.raises(Conflict, match=r"^Rita is not active$"):
            await give(gone.id)
        with pytest.raises(NotFound, match=r"^rep #999 does not exist$"):
            await give(999)
    assert (await crm.leads.get(lead.id)).responsible_id is None
    assert (await crm.deals.get(deal.id)).responsible_id is None
    assert (await crm.records.get_contact(contact.id)).responsible_id is None
    assert (await crm.records.get_company(company.id)).responsible_id is None
    assert await crm.tokens.all() == []


async def test_a_rep_edits_own_contacts_and_companies_but_gives_them_to_nobody(crm: Crm) -> None:
    rita = await crm.reps.add("Rita")
    otto = await crm.reps.add("Otto")
    boss = await crm.reps.add("Bea", role="supervisor")
    as_rita = Actor(rita.id, "rep")
    anna = await crm.records.create_contact(ContactInput(name="Anna"))
    acme = await crm.records.create_company("Acme", responsible_id=rita.id)
    ottos = await crm.records.create_company("Otto's", responsible_id=otto.id)
    # An unassigned contact a rep may take by naming themselves; not give to another rep.
    mine = await crm.records.update_contact(anna.id, ContactInput(responsible_id=rita.id), as_rita)
    assert mine.responsible_id == rita.id
    for give in (
        crm.records.update_contact(anna.id, ContactInput(responsible_id=otto.id), as_rita),
        crm.records.update_company(acme.id, responsible_id=otto.id, actor=as_rita),
        crm.records.assign_contact(anna.id, otto.id, as_rita),
        crm.records.assign_company(acme.id, otto.id, as_rita),
    ):
        with pytest.raises(Forbidden, match="supervisor"):
            await give
    with pytest.raises(Forbidden, match=f"^company #{ottos.id} belongs to another rep$"):
        await crm.records.update_contact(anna.id, ContactInput(company_id=ottos.id), as_rita)
    with pytest.raises(Forbidden):
        await crm.records.update_company(ottos.id, title="Mine now", actor=as_rita)
    with pytest.raises(InvalidInput, match="a company needs a title"):
        await crm.records.update_company(acme.id, title="  ", actor=as_rita)
    # What the rep may do goes through; the timeline says what changed, nothing else.
    moved = await crm.records.update_contact(
        anna.id, ContactInput(company_id=acme.id, phones=("030 1234567",)), as_rita
    )
    assert moved.company_title == "Acme" and moved.phones == ["+49301234567"]
    edited = (await crm.activities.timeline("contact", anna.id))[-1]
    assert edited.before == {"company_id": None}
    assert edited.after == {"company_id": acme.id, "added": "+49301234567"}
    given = await crm.records.update_company(
        acme.id, title=" Acme AG ", responsible_id=otto.id, actor=Actor(boss.id, "supervisor")
    )
    assert given.title == "Acme AG" and given.responsible_id == otto.id


async def test_reps_see_own_and_unassigned_records_only(crm: Crm) -> None:
    rita = await crm.reps.add("Rita")
    otto = await crm.reps.add("Otto")
    mine = await crm.leads.create(LeadInput(title="mine", responsible_id=rita.id))
    theirs = await crm.leads.create(LeadInput(title="theirs", responsible_id=otto.id))
    free = await crm.leads.create(LeadInput(title="free"))
    as_rita = Actor(rita.id, "rep")
    items, total = await crm.leads.page(ListFilter(), as_rita)
    assert total == 2 and {x.id for x in items} == {mine.id, free.id}
    with pytest.raises(Forbidden):
        await crm.leads.get(theirs.id, as_rita)
    with pytest.raises(Forbidden):
        await crm.leads.junk(theirs.id, "x", as_rita)
    taken = await crm.leads.take(free.id, as_rita)
    assert taken.responsible_id == rita.id and taken.taken_at is not None
    _, total = await crm.leads.page(ListFilter(), Actor(None, "supervisor"))
    assert total == 3


async def test_comment_schedule_complete_and_due_list(crm: Crm) -> None:
    rita = await crm.reps.add("Rita")
    me = Actor(rita.id, "rep")
    lead = await crm.leads.create(LeadInput(title="Call me", responsible_id=rita.id))
    note = await crm.activities.comment("lead", lead.id, "  wants an offer  ", me)
    assert note.kind == "comment" and note.body == "wants an offer" and note.done
    with pytest.raises(InvalidInput):
        await crm.activities.comment("lead", lead.id, "   ", me)
    now = datetime.now(UTC)
    task = await crm.activities.schedule(
        "lead", lead.id, due_at=now + timedelta(minutes=15), subject="Call back", actor=me
    )
    assert not task.done and task.responsible_id == rita.id
    assert await crm.activities.due(now, rep_id=rita.id) == []
    due = await crm.activities.due(now + timedelta(minutes=16), rep_id=rita.id)
    assert [a.id for a in due] == [task.id]
    followups = Followups(crm.db)
    assert await followups.remind(now + timedelta(minutes=14)) == []
    assert await followups.remind(now + timedelta(minutes=16)) == [task.id]
    assert await followups.remind(now + timedelta(minutes=17)) == []  # reminded once
    done = await crm.activities.complete(task.id, me, result="reached")
    assert done.done and done.result == "reached"
    with pytest.raises(Conflict):
        await crm.activities.complete(task.id, me)
    kinds = [a.kind for a in await crm.activities.of_record("lead", lead.id)]
    assert kinds == ["comment", "task"]


async def test_a_long_history_is_read_from_either_end_and_open_work_apart(crm: Crm) -> None:
    lead = await crm.leads.create(LeadInput(title="Busy"))
    now = datetime.now(UTC)
    task = await crm.activities.schedule("lead", lead.id, due_at=now, subject="Call back")
    notes = [(await crm.activities.comment("lead", lead.id, f"note {i}")).id for i in range(12)]
    oldest = await crm.activities.of_record("lead", lead.id, limit=3)
    assert [a.id for a in oldest] == [task.id, *notes[:2]]
    newest = await crm.activities.of_record("lead", lead.id, limit=3, newest=True)
    assert [a.id for a in newest] == notes[-3:]  # the latest three, still oldest first
    assert [a.id for a in await crm.activities.of_record("lead", lead.id, open_only=True)] == [
        task.id
    ]
    page, total = await crm.activities.page_of_record("lead", lead.id, SYSTEM, 10, 5)
    assert total == 13 and [a.id for a in page] == notes[9:]


async def test_exception_list_add_remove_and_rights(crm: Crm) -> None:
    admin = Actor(None, "admin")
    entry = await crm.exceptions.add("+49 (0)30 555 555", "robocaller", admin)
    assert (entry.kind, entry.value) == ("phone", "+4930555555")
    mail = await crm.exceptions.add("  Spam@Example.COM ", None, admin)
    assert mail.value == "spam@example.com"
    with pytest.raises(Conflict):
        await crm.exceptions.add("030 555555", None, admin)
    with pytest.raises(Forbidden):
        await crm.exceptions.add("+4930777", None, Actor(5, "rep"))
    assert {e.value for e in await crm.exceptions.all()} == {"+4930555555", "spam@example.com"}
    await crm.exceptions.remove("+4930555555", admin)
    with pytest.raises(NotFound):
        await crm.exceptions.remove("+4930555555", admin)
    lead = await crm.leads.create(LeadInput(title="x", phones=("0171 2222222",)))
    added = await crm.exceptions.add_from_lead(lead.id, None, admin)
    assert [e.value for e in added] == ["+491712222222"]
    # The lead itself stays (unlike Bitrix24, excepting never deletes).
    assert (await crm.leads.get(lead.id)).title == "x"


async def test_exception_hits_are_the_listed_pairs_of_those_asked(crm: Crm) -> None:
    """Intake asks for a whole round's phones and emails at once: only a pair on the list is
    a hit, not a kind of one listed pair with the value of another."""
    await crm.exceptions.add("+4930555555")
    await crm.exceptions.add("spam@example.com")
    asked = [
        Identity(CommKind.PHONE, "+4930555555"),
        Identity(CommKind.PHONE, "spam@example.com"),  # a cross pair of the two lists
        Identity(CommKind.EMAIL, "+4930555555"),
        Identity(CommKind.PHONE, "+4930555556"),
        Identity(CommKind.EMAIL, "spam@example.com"),
        Identity(CommKind.PHONE, "+4930555555"),  # asked twice
    ]
    async with crm.db.read() as s:
        hits = await exception_hits(s, asked)
        assert await exception_hits(s, asked[3:4]) == []
    assert hits == [asked[0], asked[4], asked[5]]


async def test_search_by_phone_email_and_name(crm: Crm) -> None:
    anna = await crm.records.create_contact(
        ContactInput(name="Anna Meier", phones=("+49 30 1234567",), emails=("anna@x.de",))
    )
    lead = await crm.leads.create(LeadInput(title="Zimmer Meier", phones=("0171 7777777",)))
    deal = await crm.deals.create("Anna's order", contact_id=anna.id)
    by_phone = await crm.search.find("030 1234567")
    assert [c.id for c in by_phone.contacts] == [anna.id] and [d.id for d in by_phone.deals] == [
        deal.id
    ]
    by_mail = await crm.search.find("ANNA@x.de")
    assert [c.id for c in by_mail.contacts] == [anna.id]
    by_name = await crm.search.find("meier")
    assert [c.id for c in by_name.contacts] == [anna.id]
    assert [x.id for x in by_name.leads] == [lead.id]
    assert (await crm.search.find("nobody")).empty
    dup = await crm.search.duplicates(["0049 30 1234567", "+49 171 7777777"], ["anna@x.de"], SYSTEM)
    assert dup.contacts == [anna.id] and dup.leads == [lead.id] and dup.companies == []
    assert dup.hidden == 0


async def test_deals_move_between_stages_and_pipelines(db: object) -> None:
    from crm.config import DEFAULT_PIPELINE, CrmConfig, PipelineDef, StatusDef
    from crm.db import Database

    assert isinstance(db, Database)
    service = Crm(
        db,
        CrmConfig(
            pipelines=(
                DEFAULT_PIPELINE,
                PipelineDef(
                    "service",
                    "Service",
                    (
                        StatusDef("OPEN", "Open", "process"),
                        StatusDef("DONE", "Done", "success"),
                        StatusDef("FAIL", "Failed", "failure"),
                    ),
                ),
            )
        ),
    )
    await service.prepare()
    deal = await service.deals.create("Repair")
    assert (deal.pipeline, deal.stage) == ("sales", "NEW")
    deal = await service.deals.move(deal.id, "NEGOTIATION")
    assert deal.stage_name == "Negotiation" and deal.closed_at is None
    deal = await service.deals.move(deal.id, "OPEN", pipeline="service")
    assert (deal.pipeline, deal.stage) == ("service", "OPEN")
    with pytest.raises(InvalidInput):
        await service.deals.move(deal.id, "WON")  # not a stage of the service pipeline
    won = await service.deals.win(deal.id)
    assert won.stage == "DONE" and won.stage_semantic == "success" and won.closed_at
    _, total = await service.deals.page(ListFilter(pipeline="service", semantic="success"))
    assert total == 1
