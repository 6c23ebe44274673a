"""A record's history through the facade, with events fed through intake so every channel's
items carry what the channel gave: calls with recordings, mails with attachments, messages,
comments, changes, call-backs and the decision reasons; paging and rights."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm.dto import Actor
from crm.errors import Forbidden, InvalidInput
from crm.facade import Crm
from crm.services.history import HistoryItem
from matching.event import Attachment, Channel, Handle
from tests.conftest import make_event

CALL = {
    "call_id": "call-1",
    "stage": "ended",
    "disposition": "answered",
    "duration": 125,
    "recording_url": "https://pbx.example/rec/1.mp3",
}


async def _all(crm: Crm, owner_type: str, owner_id: int, actor: Actor) -> list[HistoryItem]:
    page = await crm.history.page(owner_type, owner_id, actor, limit=200)
    assert page.next_cursor is None
    return page.items


async def test_a_lead_history_tells_every_channel_and_change_newest_first(crm: Crm) -> None:
    rita = await crm.reps.add("Rita Rep")
    me = Actor(rita.id, "rep")
    call = await crm.intake.process(
        make_event(phones=("030 1234567",), display_name="Anna", meta=CALL)
    )
    lead_id = call.lead_id or 0
    await crm.intake.process(
        make_event(
            channel=Channel.WHATSAPP,
            phones=("+49 30 1234567",),
            handles=(Handle("whatsapp", "49301234567"),),
            text="Do you deliver on Sunday?",
        )
    )
    await crm.intake.process(
        make_event(
            channel=Channel.EMAIL,
            phones=("030 1234567",),
            emails=("anna@example.org",),
            subject="Our floor plan",
            text="See the plan attached.",
            attachments=(Attachment("plan.pdf", "application/pdf", 12000),),
        )
    )
    await crm.activities.comment("lead", lead_id, "Wants a quote by Friday", me)
    await crm.leads.change_status(lead_id, "PROCESSED", me)
    await crm.activities.schedule(
        "lead",
        lead_id,
        due_at=datetime.now(UTC) + timedelta(hours=2),
        subject="Call back",
        actor=me,
    )

    items = await _all(crm, "lead", lead_id, me)
    assert [i.at for i in items] == sorted((i.at for i in items), reverse=True)
    assert all((i.owner_type, i.owner_id) == ("lead", lead_id) for i in items)
    kinds = [i.kind for i in items]
    for kind in ("call", "message", "email", "comment", "task", "change"):
        assert kind in kinds, kinds

    [c] = [i for i in items if i.kind == "call"]
    assert c.title == "Incoming call, 2:05" and c.duration == 125
    assert c.recording_url == "https://pbx.example/rec/1.mp3"
    assert [d.reason for d in c.decisions] == ["no match → new lead"]
    [m] = [i for i in items if i.kind == "message"]
    assert m.title == "WhatsApp message" and m.body == "Do you deliver on Sunday?"
    assert m.decisions and m.decisions[0].outcome != "new_lead"
    [e] = [i for i in items if i.kind == "email"]
    assert (e.title, e.body, e.attachments) == (
        "Our floor plan",
        "See the plan attached.",
        ("plan.pdf",),
    )
    [comment] = [i for i in items if i.kind == "comment"]
    assert (comment.actor_name, comment.body) == ("Rita Rep", "Wants a quote by Friday")
    [task] = [i for i in items if i.kind == "task"]
    assert task.title == "Call back" and task.due_at and task.done is False
    status = next(i for i in items if i.action == "status")
    assert status.title.endswith("→ Processed") and status.actor_name == "Rita Rep"
    created = next(i for i in items if i.action == "created")
    assert created.actor_name is None and created.body == "no match → new lead"
    assert len({i.key for i in items}) == len(items)


async def test_pages_walk_the_whole_history_without_gaps_or_doubles(crm: Crm) -> None:
    r = await crm.intake.process(make_event(phones=("030 7654321",)))
    lead_id = r.lead_id or 0
    for n in range(6):
        await crm.activities.comment("lead", lead_id, f"note {n}")
    whole = [i.key for i in await _all(crm, "lead", lead_id, Actor(None))]
    walked: list[str] = []
    cursor: str | None = None
    while True:
        page = await crm.history.page("lead", lead_id, Actor(None), after=cursor, limit=2)
        walked += [i.key for i in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert walked == whole and len(whole) >= 8
    with pytest.raises(InvalidInput, match="page link is broken"):
        await crm.history.page("lead", lead_id, Actor(None), after="%%%")
    with pytest.raises(InvalidInput, match="unknown record type"):
        await crm.history.page("ticket", 1, Actor(None))


async def test_contact_and_company_histories_gather_their_records(crm: Crm) -> None:
    r = await crm.intake.process(
        make_event(
            channel=Channel.WEBFORM,
            phones=("030 111222",),
            display_name="Bob",
            company_name="Bob & Sons",
            text="Need 40 chairs",
            meta={"form": "contact-us"},
        )
    )
    lead_id = r.lead_id or 0
    done = await crm.leads.convert(lead_id, into=("contact", "company", "deal"))
    assert done.contact_id and done.company_id and done.deal
    await crm.deals.lose(done.deal.id, reason="went elsewhere")

    contact = await _all(crm, "contact", done.contact_id, Actor(None))
    owners = {(i.owner_type, i.owner_id) for i in contact}
    assert ("lead", lead_id) in owners and ("deal", done.deal.id) in owners
    form = next(i for i in contact if i.kind == "webform")
    assert form.title == "Web form contact-us" and form.body == "Need 40 chairs"
    # An activity bound to the lead and its deal and contact is told once, on the most
    # specific record of them.
    assert [i.kind for i in contact].count("webform") == 1
    assert (form.owner_type, form.owner_id) == ("deal", done.deal.id)
    lost = next(i for i in contact if i.action == "lost")
    assert lost.title == "Lost: New → Lost" and lost.body == "went elsewhere"

    company = await _all(crm, "company", done.company_id, Actor(None))
    assert {("contact", done.contact_id), ("lead", lead_id)} <= {
        (i.owner_type, i.owner_id) for i in company
    }


async def test_an_import_without_activity_shows_its_decision(crm: Crm) -> None:
    r = await crm.intake.process(
        make_event(
            channel=Channel.IMPORT,
            phones=("030 999888",),
            display_name="Clara Import",
            meta={"import_as": "contact", "row": 2},
        )
    )
    assert r.contact_id and r.activity_id is None
    [item] = [i for i in await _all(crm, "contact", r.contact_id, Actor(None)) if i.kind == "event"]
    assert item.title.startswith("Import: ") and item.body == r.reason


async def test_a_rep_reads_own_and_queue_histories_only(crm: Crm) -> None:
    rita = await crm.reps.add("Rita Rep")
    sam = await crm.reps.add("Sam Rep")
    r = await crm.intake.process(make_event(phones=("030 4444444",)))
    lead_id = r.lead_id or 0
    await crm.leads.assign(lead_id, rita.id)
    with pytest.raises(Forbidden, match="another rep"):
        await crm.history.page("lead", lead_id, Actor(sam.id, "rep"))
    assert (await crm.history.page("lead", lead_id, Actor(rita.id, "rep"))).items
    assert (await crm.history.page("lead", lead_id, Actor(sam.id, "supervisor"))).items
