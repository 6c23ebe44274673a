"""Text a database cannot store (NUL, lone surrogates) is cleaned before the acknowledgement:
the signed call is accepted once, its lead carries the cleaned name, nothing stays queued."""

from __future__ import annotations

import json

import pytest

from tests.phone.conftest import LINE, PhoneClient


@pytest.mark.parametrize(
    ("caller_name", "stored"),
    [("Anna\x00 Meier", "Anna Meier"), ("Bernd \ud800Kurz\x1b", "Bernd \ufffdKurz")],
)
async def test_unstorable_caller_name_is_cleaned_not_retried_forever(
    phone: PhoneClient, caller_name: str, stored: str
) -> None:
    doc = {
        "event": "call.missed",
        "call_id": "poison-1",
        "direction": "incoming",
        "from": "+4930555123",
        "to": LINE,
        "caller_name": caller_name,
    }
    body = json.dumps(doc).encode()  # the surrogate travels as the escape \ud800
    reply = await phone.post_generic(body)
    assert reply.status == 202, reply.text
    await phone.settle()
    leads = await phone.leads()
    assert [lead.name for lead in leads] == [stored]
    backlog = await phone.service.queue.backlog()
    assert backlog.items == 0
    # A retry of the same call is a duplicate, not a second lead.
    assert (await phone.post_generic(body)).status == 200
    await phone.settle()
    assert len(await phone.leads()) == 1


async def test_bitrix_register_with_a_lone_surrogate_is_stored_cleaned(
    phone: PhoneClient,
) -> None:
    from tests.phone.conftest import add_rep

    rep = await add_rep(phone, "Rita", extension="101")
    reply = await phone.bitrix(
        "telephony.externalcall.register",
        json_body={
            "USER_ID": rep,
            "PHONE_NUMBER": "+4930555124",
            "TYPE": 2,
            "CRM_CREATE": 1,
            "LINE_NUMBER": "line\ud800\x00",
        },
    )
    assert reply.status == 200, reply.text
    assert reply.json()["result"]["CALL_ID"]
    await phone.settle()
    assert len(await phone.leads()) == 1


async def test_a_call_id_of_control_characters_alone_is_refused_not_queued(
    phone: PhoneClient,
) -> None:
    doc = {"event": "call.missed", "call_id": "\x00\x1b", "direction": "incoming"}
    reply = await phone.post_generic(json.dumps(doc).encode())
    assert reply.status == 400 and reply.json()["detail"] == "call_id is required"
    await phone.settle()
    assert (await phone.service.queue.backlog()).items == 0
