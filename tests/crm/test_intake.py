"""Intake end to end on a real database: the decision table applied, exactly once."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from crm.config import CrmConfig
from crm.facade import Crm
from crm.models import Activity, Contact, Deal, InboundEventLog, Lead, OutboxMessage
from crm.services.leads import LeadInput
from crm.services.records import ContactInput
from matching.event import Channel, Direction, Handle
from matching.model import CrmMode, MatchSettings
from tests.conftest import make_event

CALL_META = {"call_id": "c1", "stage": "ended", "disposition": "answered"}


async def count(crm: Crm, model: Any, *where: Any) -> int:
    async with crm.db.transaction() as s:
        return int(await s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def test_unknown_caller_becomes_a_new_lead_with_activity_and_notification(crm: Crm) -> None:
    rep = await crm.reps.add("Rita")
    r = await crm.intake.process(make_event(phones=("030 1234567",), meta=CALL_META))
    assert r.outcome == "new_lead" and r.reason == "no match → new lead"
    lead = await crm.leads.get(r.lead_id or 0)
    assert lead.title == "030 1234567 — incoming call" and lead.source == "CALL"
    assert [c.value for c in lead.comms] == ["+49301234567"]
    assert lead.responsible_id == rep.id  # the distribution queue picked the only rep
    acts = await crm.activities.of_record("lead", lead.id)
    assert [a.kind for a in acts] == ["call"]
    assert await count(crm, OutboxMessage, OutboxMessage.kind == "new_lead") == 1


async def test_same_event_five_times_has_one_outcome(crm: Crm) -> None:
    event = make_event(channel=Channel.EMAIL, external_id="<m1@x>", emails=("a@b.de",))
    results = [await crm.intake.process(event) for _ in range(5)]
    assert [r.outcome for r in results] == ["new_lead"] + ["duplicate"] * 4
    assert {r.lead_id for r in results} == {results[0].lead_id}
    assert await count(crm, Lead) == 1
    assert await count(crm, InboundEventLog) == 1
    assert await count(crm, Activity) == 1


async def test_concurrent_copies_of_one_event_take_effect_once(crm: Crm) -> None:
    event = make_event(external_id="dup-1", phones=("+4930999",))
    results = await asyncio.gather(*(crm.intake.process(event) for _ in range(5)))
    assert sorted(r.outcome for r in results) == ["duplicate"] * 4 + ["new_lead"]
    assert await count(crm, Lead) == 1


async def test_second_email_from_same_address_attaches_to_the_open_lead(crm: Crm) -> None:
    first = await crm.intake.process(
        make_event(
            channel=Channel.EMAIL,
            external_id="<a@x>",
            emails=("Kunde@Example.de",),
            display_name="Karl Kunde",
            subject="Angebot",
        )
    )
    second = await crm.intake.process(
        make_event(
            channel=Channel.EMAIL,
            external_id="<b@x>",
            emails=("kunde@example.de",),
            subject="Nachfrage",
            phones=("0171 1234567",),
        )
    )
    assert second.outcome == "attached_lead" and second.lead_id == first.lead_id
    assert await count(crm, Lead) == 1
    acts = await crm.activities.of_record("lead", first.lead_id or 0)
    assert [a.kind for a in acts] == ["email", "email"]
    lead = await crm.leads.get(first.lead_id or 0)
    # The new phone was merged into the lead; the name the first mail gave stays.
    assert {c.value for c in lead.comms} == {"kunde@example.de", "+491711234567"}
    assert lead.name == "Karl Kunde"


async def test_excepted_number_creates_and_touches_nothing(crm: Crm) -> None:
    await crm.exceptions.add("+49 30 555555", "spam caller")
    r = await crm.intake.process(make_event(phones=("030 555555", "0171 7654321")))
    assert r.outcome == "ignored" and "+4930555555" in r.reason
    assert await count(crm, Lead) == 0 and await count(crm, Activity) == 0
    assert await count(crm, OutboxMessage) == 0
    log = await crm.events.get("call", r and (await crm.events.page())[0][0].external_id)
    assert log is not None and log.outcome == "ignored"


async def test_known_client_after_conversion_gets_a_repeat_lead(crm: Crm) -> None:
    first = await crm.intake.process(make_event(phones=("+49 30 1234567",), display_name="Anna"))
    conv = await crm.leads.convert(first.lead_id or 0)
    assert conv.deal is not None
    # Open deal: the next call attaches to it.
    r2 = await crm.intake.process(make_event(phones=("030 1234567",)))
    assert r2.outcome == "attached_deal" and r2.deal_id == conv.deal.id
    await crm.deals.win(conv.deal.id)
    r3 = await crm.intake.process(make_event(phones=("030 1234567",)))
    assert r3.outcome == "new_repeat_lead"
    lead = await crm.leads.get(r3.lead_id or 0)
    assert lead.is_return_customer and lead.contact_id == conv.contact_id
    # A further call while the repeat lead is open attaches to it.
    r4 = await crm.intake.process(make_event(phones=("+49301234567",)))
    assert r4.outcome == "attached_lead" and r4.lead_id == lead.id
    # Converting the repeat lead gives a deal for the same contact, and no new contact.
    conv2 = await crm.leads.convert(lead.id)
    assert conv2.deal is not None and conv2.deal.contact_id == conv.contact_id
    assert conv2.deal.is_return_customer  # the client has a won deal
    assert await count(crm, Contact) == 1


async def test_repeat_sales_off_puts_the_activity_on_the_contact(db: Any) -> None:
    crm = Crm(db, CrmConfig(match=MatchSettings(repeat_sales=False)))
    await crm.prepare()
    anna = await crm.records.create_contact(ContactInput(name="Anna", phones=("030 1234567",)))
    r = await crm.intake.process(make_event(phones=("+49 30 1234567",)))
    assert r.outcome == "attached_client" and r.contact_id == anna.id
    assert await count(crm, Lead) == 0
    assert [a.kind for a in await crm.activities.of_record("contact", anna.id)] == ["call"]


async def test_simple_mode_creates_contact_and_deal_then_repeat_deal(db: Any) -> None:
    crm = Crm(db, CrmConfig(match=MatchSettings(crm_mode=CrmMode.SIMPLE)))
    await crm.prepare()
    r = await crm.intake.process(
        make_event(
            channel=Channel.WEBFORM,
            emails=("x@y.de",),
            first_name="Xaver",
            last_name="Yps",
            company_name="XY GmbH",
        )
    )
    assert r.outcome == "new_deal" and r.contact_id and r.company_id and r.deal_id
    contact = await crm.records.get_contact(r.contact_id)
    assert contact.name == "Xaver Yps" and contact.company_id == r.company_id
    assert await count(crm, Lead) == 0
    await crm.deals.lose(r.deal_id)
    r2 = await crm.intake.process(make_event(channel=Channel.EMAIL, emails=("X@Y.de",)))
    assert r2.outcome == "new_repeat_deal"
    deal = await crm.deals.get(r2.deal_id or 0)
    assert deal.company_id == r.company_id and deal.is_repeated_approach


async def test_open_unlinked_lead_is_attached_not_duplicated_by_a_repeat_lead(crm: Crm) -> None:
    # Bitrix24's blind spot: a contact typed in by hand while a lead for the number is open.
    lead = await crm.leads.create(LeadInput(title="Old inquiry", phones=("030 1234567",)))
    anna = await crm.records.create_contact(ContactInput(name="Anna", phones=("+49301234567",)))
    r = await crm.intake.process(make_event(phones=("030 1234567",)))
    assert r.outcome == "attached_lead" and r.lead_id == lead.id
    linked = await crm.leads.get(lead.id)
    assert linked.contact_id == anna.id and linked.is_return_customer
    assert await count(crm, Lead) == 1


async def test_mail_reply_follows_its_thread_from_another_address(crm: Crm) -> None:
    first = await crm.intake.process(
        make_event(channel=Channel.EMAIL, external_id="<orig@x>", emails=("a@firma.de",))
    )
    reply = await crm.intake.process(
        make_event(
            channel=Channel.EMAIL,
            external_id="<re@x>",
            emails=("kollege@firma.de",),
            meta={"in_reply_to": "<orig@x>", "references": ["<orig@x>"]},
        )
    )
    assert reply.outcome == "attached_lead" and reply.lead_id == first.lead_id


async def test_outgoing_call_to_unknown_number_creates_nothing(crm: Crm) -> None:
    r = await crm.intake.process(make_event(direction=Direction.OUTGOING, phones=("+4930111222",)))
    assert r.outcome == "ignored" and await count(crm, Lead) == 0


async def test_telegram_handle_is_stored_and_matches_next_time(crm: Crm) -> None:
    h = (Handle("telegram", "4242", "anna_m"),)
    first = await crm.intake.process(
        make_event(channel=Channel.TELEGRAM, handles=h, display_name="Anna", text="Hi")
    )
    again = await crm.intake.process(make_event(channel=Channel.TELEGRAM, handles=h, text="?"))
    assert first.outcome == "new_lead" and again.lead_id == first.lead_id
    lead = await crm.leads.get(first.lead_id or 0)
    assert [(c.kind, c.value, c.label) for c in lead.comms] == [("telegram", "4242", "anna_m")]


async def test_five_missed_calls_one_lead_one_task_counted_then_closed(crm: Crm) -> None:
    def missed(n: int) -> Any:
        return make_event(
            external_id=f"m{n}:missed",
            phones=("+49 30 1234567",),
            meta={"call_id": f"m{n}", "stage": "missed", "missed": True, "disposition": "missed"},
        )

    results = [await crm.intake.process(missed(n)) for n in range(5)]
    assert [r.outcome for r in results] == ["new_lead"] + ["attached_lead"] * 4
    assert await count(crm, Lead) == 1
    tasks = [
        a
        for a in await crm.activities.of_record("lead", results[0].lead_id or 0)
        if a.kind == "task"
    ]
    assert len(tasks) == 1 and tasks[0].attempts == 5 and not tasks[0].done
    assert tasks[0].subject == "Call back +49301234567"
    # The same missed call reported again does not count twice.
    await crm.intake.process(
        make_event(
            external_id="m4:ended",
            phones=("+49 30 1234567",),
            meta={"call_id": "m4", "stage": "ended", "missed": True},
        )
    )
    assert (await crm.activities.get(tasks[0].id)).attempts == 5
    answered = make_event(
        external_id="a1:answered",
        phones=("030 1234567",),
        meta={"call_id": "a1", "stage": "answered", "disposition": "answered"},
    )
    await crm.intake.process(answered)
    done = await crm.activities.get(tasks[0].id)
    assert done.done and done.result == "called back"
    assert await count(crm, Deal) == 0


async def test_admin_switch_to_simple_mode_applies_to_the_next_event(crm: Crm) -> None:
    from crm.dto import Actor

    first = await crm.intake.process(make_event(phones=("+4930100100",)))
    assert first.outcome == "new_lead"
    await crm.settings.update(Actor(rep_id=None, role="admin"), crm_mode="simple")
    second = await crm.intake.process(make_event(phones=("+4930200200",)))
    assert second.outcome == "new_deal"


async def test_a_late_ringing_event_does_not_take_back_how_the_call_ended(crm: Crm) -> None:
    ended = make_event(
        external_id="late:final",
        phones=("+4930123123",),
        meta={"call_id": "late", "stage": "ended", "disposition": "answered", "duration": 42},
    )
    ringing = make_event(
        external_id="late:ringing",
        phones=("+4930123123",),
        meta={"call_id": "late", "stage": "ringing", "duration": None},
    )
    first = await crm.intake.process(ended)
    await crm.intake.process(ringing)
    act = await crm.activities.get(first.activity_id or 0)
    assert act.meta["stage"] == "ended" and act.meta["disposition"] == "answered"
    assert act.meta["duration"] == 42


async def test_a_missed_call_is_one_notification_not_two(crm: Crm) -> None:
    """A new lead's card shows the call-back task; a further missed call is one notice."""

    def missed(call_id: str) -> Any:
        meta = {"call_id": call_id, "stage": "missed", "missed": True, "disposition": "missed"}
        return make_event(phones=("+49 30 7000001",), meta=meta)

    await crm.intake.process(missed("m1"))
    async with crm.db.transaction() as s:
        kinds = list(await s.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id)))
    assert kinds == ["new_lead"]
    await crm.intake.process(missed("m2"))
    async with crm.db.transaction() as s:
        kinds = list(await s.scalars(select(OutboxMessage.kind).order_by(OutboxMessage.id)))
    assert kinds == ["new_lead", "missed_call"]


async def test_a_mail_from_a_contact_lands_on_her_companys_open_deal(crm: Crm) -> None:
    """The company holds no address itself; its open deal wins over the contact's (R2.7)."""
    acme = await crm.records.create_company("Acme GmbH")
    anna = await crm.records.create_contact(
        ContactInput(name="Anna Meier", emails=("anna@acme.example",), company_id=acme.id)
    )
    deal = await crm.deals.create("Acme rollout", company_id=acme.id)
    await crm.deals.create("Anna's own", contact_id=anna.id)  # newer, still loses
    mail = make_event(
        channel=Channel.EMAIL, emails=("anna@acme.example",), meta={"from": "anna@acme.example"}
    )
    r = await crm.intake.process(mail)
    assert (r.outcome, r.deal_id, r.company_id, r.contact_id) == (
        "attached_deal",
        deal.id,
        acme.id,
        anna.id,
    )
    assert f"company Acme GmbH #{acme.id}'s open deal #{deal.id}" in r.reason
    assert [a.kind for a in await crm.activities.of_record("deal", deal.id)] == ["email"]


async def test_the_senders_own_address_outranks_a_phone_in_the_signature(crm: Crm) -> None:
    """Anna (older, with an open deal) is only the phone in Bernd's signature: the mail is
    Bernd's, whose From address the mailbox saw."""
    anna = await crm.records.create_contact(ContactInput(name="Anna", phones=("+49 30 5550201",)))
    await crm.deals.create("Anna's deal", contact_id=anna.id)
    bernd = await crm.records.create_contact(
        ContactInput(name="Bernd", emails=("bernd@example.com",))
    )
    mail = make_event(
        channel=Channel.EMAIL,
        emails=("bernd@example.com",),
        hint_phones=("030 5550201",),
        meta={"from": "bernd@example.com"},
    )
    r = await crm.intake.process(mail)
    assert (r.outcome, r.contact_id, r.deal_id) == ("new_repeat_lead", bernd.id, None)
    assert "the From address wins" in r.reason
    lead = await crm.leads.get(r.lead_id or 0)
    assert lead.contact_id == bernd.id
