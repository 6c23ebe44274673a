"""What Bitrix24 telephony calls do in the CRM, over real HTTP: CRM_CREATE, a call bound to
the entity the phone system names (CRM_ENTITY_TYPE / _ID), and finish handing the records a
call created to the rep who finished it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from crm.dto import SYSTEM
from crm.models import OutboxMessage
from crm.services.leads import LeadInput
from crm.services.records import ContactInput
from tests.phone.conftest import PhoneClient, add_rep

CALLER = "+4930123456"
REGISTER = "telephony.externalcall.register"
FINISH = "telephony.externalcall.finish"


async def _call(phone: PhoneClient, method: str, **params: Any) -> dict[str, Any]:
    reply = await phone.bitrix(method, json_body=params)
    assert reply.status == 200, reply.text
    result: dict[str, Any] = reply.json()["result"]
    return result


async def _register(phone: PhoneClient, user: int, **params: Any) -> dict[str, Any]:
    return await _call(phone, REGISTER, USER_ID=user, PHONE_NUMBER=CALLER, TYPE=2, **params)


async def _outbox(phone: PhoneClient, kind: str) -> list[OutboxMessage]:
    async with phone.service.db.transaction() as s:
        query = select(OutboxMessage).where(OutboxMessage.kind == kind).order_by(OutboxMessage.id)
        return list(await s.scalars(query))


# --- CRM_CREATE -------------------------------------------------------------------------------


async def test_without_crm_create_an_unknown_caller_creates_nothing(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna")
    # CRM_CREATE left out: Bitrix24's default is 0.
    registered = await _register(phone, rep, EXTERNAL_CALL_ID="a-1")
    assert registered["CRM_CREATED_LEAD"] is None and registered["CRM_CREATED_ENTITIES"] == []
    assert registered["CRM_ENTITY_TYPE"] is None and registered["CRM_ENTITY_ID"] is None
    done = await _call(
        phone, FINISH, CALL_ID=registered["CALL_ID"], USER_ID=rep, DURATION=0, STATUS_CODE="304"
    )
    assert done["CRM_ACTIVITY_ID"] is None and done["CALL_FAILED_CODE"] == "304"
    assert await phone.leads() == []
    assert await phone.activities("call") == [] and await phone.activities("task") == []
    # The call is still on record: both events are in the event log, matched to nobody.
    events, _ = await phone.service.crm.events.page(channel="call")
    assert len(events) == 2
    assert {e.outcome for e in events} == {"ignored"}
    assert all("update-only" in e.reason for e in events)
    # Explicitly 0 is the same; 1 creates the lead.
    zero = await _register(phone, rep, EXTERNAL_CALL_ID="a-2", CRM_CREATE=0)
    assert zero["CRM_CREATED_ENTITIES"] == [] and await phone.leads() == []
    one = await _register(phone, rep, EXTERNAL_CALL_ID="a-3", CRM_CREATE=1)
    [lead] = await phone.leads()
    assert one["CRM_CREATED_ENTITIES"] == [{"ENTITY_TYPE": "LEAD", "ENTITY_ID": lead.id}]


async def test_without_crm_create_a_known_caller_is_still_attached(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna")
    contact = await phone.service.crm.records.create_contact(
        ContactInput(name="Erika Muster", phones=("030 123456",), responsible_id=rep)
    )
    registered = await _register(phone, rep, CRM_CREATE=0)
    assert registered["CRM_CREATED_ENTITIES"] == []
    assert (registered["CRM_ENTITY_TYPE"], registered["CRM_ENTITY_ID"]) == ("CONTACT", contact.id)
    done = await _call(phone, FINISH, CALL_ID=registered["CALL_ID"], USER_ID=rep, DURATION=12)
    [call] = await phone.activities("call")
    assert done["CRM_ACTIVITY_ID"] == call.id
    activity = await phone.service.crm.activities.get(call.id)
    assert ("contact", contact.id) in activity.bindings
    assert await phone.leads() == []  # no repeat lead either: nothing is created


# --- CRM_ENTITY_TYPE / CRM_ENTITY_ID -----------------------------------------------------------


async def test_named_contact_gets_the_call_of_an_unknown_number(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna")
    crm = phone.service.crm
    contact = await crm.records.create_contact(
        ContactInput(name="Erika Muster", phones=("+4940111111",), responsible_id=rep)
    )
    registered = await _register(
        phone, rep, CRM_CREATE=1, CRM_ENTITY_TYPE="CONTACT", CRM_ENTITY_ID=contact.id
    )
    assert registered["CRM_CREATED_ENTITIES"] == [] and registered["CRM_CREATED_LEAD"] is None
    assert (registered["CRM_ENTITY_TYPE"], registered["CRM_ENTITY_ID"]) == ("CONTACT", contact.id)
    assert await phone.leads() == []  # CRM_CREATE=1, yet the call belongs to the contact
    [call] = await phone.activities("call")
    assert (await crm.activities.get(call.id)).bindings == [("contact", contact.id)]
    # A missed call: the outcome lands on the same activity, the call-back task on the contact.
    done = await _call(phone, FINISH, CALL_ID=registered["CALL_ID"], USER_ID=rep, DURATION=0)
    assert done["CRM_ACTIVITY_ID"] == call.id
    assert (done["CRM_ENTITY_TYPE"], done["CRM_ENTITY_ID"]) == ("CONTACT", contact.id)
    [call] = await phone.activities("call")
    assert call.meta is not None and call.meta["disposition"] == "missed"
    [task] = await phone.activities("task")
    assert (await crm.activities.get(task.id)).bindings == [("contact", contact.id)]
    assert task.responsible_id == rep and not task.done
    # The rep hears about the missed call on the contact's card.
    [note] = await _outbox(phone, "missed_call")
    assert note.rep_id == rep and note.payload["contact_id"] == contact.id
    assert await phone.leads() == []


async def test_named_company_wins_over_the_number_match(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna")
    crm = phone.service.crm
    lead = await crm.leads.create(LeadInput(title="Open lead", phones=(CALLER,)))
    company = await crm.records.create_company("Muster GmbH", responsible_id=rep)
    registered = await _register(phone, rep, CRM_ENTITY_TYPE="company", CRM_ENTITY_ID=company.id)
    assert (registered["CRM_ENTITY_TYPE"], registered["CRM_ENTITY_ID"]) == ("COMPANY", company.id)
    [call] = await phone.activities("call")
    # Bound to the company only, not to the lead the number belongs to.
    assert (await crm.activities.get(call.id)).bindings == [("company", company.id)]
    assert [x.id for x in await phone.leads()] == [lead.id]


async def test_named_entity_must_exist_and_be_contact_company_or_lead(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna")
    for kind, ident, description in (
        ("LEAD", 999, "CRM entity LEAD #999 is not found"),
        ("CONTACT", 5, "CRM entity CONTACT #5 is not found"),
        ("DEAL", 1, "CRM_ENTITY_TYPE should be CONTACT, COMPANY or LEAD"),
    ):
        reply = await phone.bitrix(
            REGISTER,
            json_body={"USER_ID": rep, "PHONE_NUMBER": CALLER, "TYPE": 2, "CRM_CREATE": 1,
                       "CRM_ENTITY_TYPE": kind, "CRM_ENTITY_ID": ident},
        )  # fmt: skip
        assert reply.status == 400, reply.text
        assert reply.json() == {"error": "ERROR_CORE", "error_description": description}
    assert await phone.leads() == [] and await phone.activities("call") == []


# --- finish hands created records to the finishing rep -----------------------------------------


async def test_finish_by_another_rep_hands_over_what_the_call_created(phone: PhoneClient) -> None:
    anna = await add_rep(phone, "Anna", extension="101")
    ben = await add_rep(phone, "Ben", extension="102")
    registered = await _register(phone, anna, CRM_CREATE=1)
    [lead] = await phone.leads()
    [call] = await phone.activities("call")
    assert lead.responsible_id == anna and call.responsible_id == anna
    # Ben took the call: the PBX finishes it with his extension; it was missed on his phone.
    await _call(phone, FINISH, CALL_ID=registered["CALL_ID"], USER_PHONE_INNER="102", DURATION=0)
    [lead] = await phone.leads()
    [call] = await phone.activities("call")
    [task] = await phone.activities("task")
    assert (lead.responsible_id, call.responsible_id, task.responsible_id) == (ben, ben, ben)
    history = await phone.service.crm.activities.timeline("lead", lead.id)
    assert [(t.action, t.after["responsible_id"]) for t in history if t.action == "assigned"] == [
        ("assigned", ben)
    ]
    [note] = await _outbox(phone, "assigned")
    assert note.rep_id == ben and note.payload["lead_id"] == lead.id


async def test_records_changed_by_hand_keep_their_responsible(phone: PhoneClient) -> None:
    anna = await add_rep(phone, "Anna")
    ben = await add_rep(phone, "Ben")
    cleo = await add_rep(phone, "Cleo")
    registered = await _register(phone, anna, CRM_CREATE=1)
    [lead] = await phone.leads()
    await phone.service.crm.leads.assign(lead.id, cleo, SYSTEM)  # a supervisor moved it
    done = await _call(phone, FINISH, CALL_ID=registered["CALL_ID"], USER_ID=ben, DURATION=40)
    assert done["PORTAL_USER_ID"] == ben
    [lead] = await phone.leads()
    [call] = await phone.activities("call")
    assert lead.responsible_id == cleo  # left as the supervisor set it
    assert call.responsible_id == ben  # the call activity was untouched: it goes with the call
    # Cleo was told of the supervisor's move; the finish told nobody.
    assert [n.rep_id for n in await _outbox(phone, "assigned")] == [cleo]


async def test_finish_by_the_same_rep_and_simple_mode(phone: PhoneClient) -> None:
    anna = await add_rep(phone, "Anna")
    ben = await add_rep(phone, "Ben")
    crm = phone.service.crm
    same = await _register(phone, anna, CRM_CREATE=1, EXTERNAL_CALL_ID="s-1")
    await _call(phone, FINISH, CALL_ID=same["CALL_ID"], USER_ID=anna, DURATION=5)
    assert [x.responsible_id for x in await phone.leads()] == [anna]
    assert await _outbox(phone, "assigned") == []
    # Simple mode: the call creates a deal and a contact; both go to the finishing rep.
    await crm.settings.update(SYSTEM, crm_mode="simple")
    other = await _call(
        phone, REGISTER, USER_ID=anna, PHONE_NUMBER="+4930999888", TYPE=2, CRM_CREATE=1
    )
    kinds = {e["ENTITY_TYPE"]: e["ENTITY_ID"] for e in other["CRM_CREATED_ENTITIES"]}
    assert set(kinds) == {"CONTACT", "DEAL"}
    await _call(phone, FINISH, CALL_ID=other["CALL_ID"], USER_ID=ben, DURATION=5)
    deal = await crm.deals.get(kinds["DEAL"])
    contact = await crm.records.get_contact(kinds["CONTACT"])
    assert (deal.responsible_id, contact.responsible_id) == (ben, ben)
    [note] = await _outbox(phone, "assigned")
    assert note.payload["deal_id"] == deal.id


async def test_crm_source_is_the_source_of_the_lead_the_call_creates(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna")
    await _register(phone, rep, CRM_CREATE=1, CRM_SOURCE="advertising")
    [lead] = await phone.leads()
    assert lead.source == "ADVERTISING"
