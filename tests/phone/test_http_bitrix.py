"""Bitrix24 telephony REST over real HTTP, in the shapes Bitrix24 clients send: GET with a
PHP-style query (unencoded "+" included), form POSTs and POST JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from crm.models import ExternalCall
from crm.services.records import ContactInput
from tests.phone.conftest import PhoneClient, add_rep

CALLER = "+4930123456"


async def _register(phone: PhoneClient, **params: Any) -> dict[str, Any]:
    body = {"USER_ID": 1, "PHONE_NUMBER": CALLER, "TYPE": 2, "CRM_CREATE": 1, **params}
    reply = await phone.bitrix("telephony.externalcall.register", json_body=body)
    assert reply.status == 200, reply.text
    result: dict[str, Any] = reply.json()["result"]
    return result


async def test_register_finish_flow_creates_lead_and_one_activity(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna", extension="101")
    # bitrix24-rest style: GET, method with ".json", values not URL-encoded ("+" arrives as " ").
    reply = await phone.bitrix(
        "telephony.externalCall.register.json",
        query=f"USER_PHONE_INNER=101&PHONE_NUMBER={CALLER}&TYPE=2&CRM_CREATE=1"
        "&LINE_NUMBER=%2B4989111222&CALL_START_DATE=2024-05-14T09:00:00%2B02:00"
        "&select%5B%5D=ID&start=0&",
    )
    assert reply.status == 200, reply.text
    body = reply.json()
    assert set(body["time"]) >= {"start", "finish", "duration", "operating"}
    result = body["result"]
    [lead] = await phone.leads()
    assert result["CALL_ID"].startswith("externalCall.")
    assert result["CRM_CREATED_LEAD"] == lead.id
    assert result["CRM_CREATED_ENTITIES"] == [{"ENTITY_TYPE": "LEAD", "ENTITY_ID": lead.id}]
    assert (result["CRM_ENTITY_TYPE"], result["CRM_ENTITY_ID"]) == ("LEAD", lead.id)
    assert lead.title == f"{CALLER} — incoming call" and lead.source == "CALL"
    assert lead.responsible_id == rep  # the user the call was registered for
    # PHP clients finish with a form POST.
    finish = await phone._send(
        "POST",
        "/rest/1/b24secret/telephony.externalcall.finish",
        data={
            "CALL_ID": result["CALL_ID"],
            "USER_ID": str(rep),
            "DURATION": "95",
            "STATUS_CODE": "200",
            "RECORD_URL": "https://pbx.example.com/rec/1.mp3",
        },
    )
    assert finish.status == 200, finish.text
    done = finish.json()["result"]
    [call] = await phone.activities("call")
    assert done["CALL_ID"] == result["CALL_ID"]
    assert done["CRM_ACTIVITY_ID"] == call.id
    assert (done["CALL_DURATION"], done["CALL_STATUS"], done["PORTAL_USER_ID"]) == (95, 1, rep)
    assert done["PHONE_NUMBER"] == CALLER and done["PORTAL_NUMBER"] == "+4989111222"
    assert done["CALL_START_DATE"].startswith("2024-05-14T09:00:00+02:00")
    assert call.meta is not None
    assert (call.meta["duration"], call.meta["disposition"]) == (95, "answered")
    assert call.meta["recording_url"] == "https://pbx.example.com/rec/1.mp3"
    # Finishing again answers the same and changes nothing.
    again = await phone.bitrix(
        "telephony.externalcall.finish",
        json_body={"CALL_ID": result["CALL_ID"], "USER_ID": rep, "DURATION": 5},
    )
    assert again.json()["result"] == done
    assert len(await phone.activities("call")) == 1
    assert len(await phone.leads()) == 1


async def test_repeated_register_within_30_minutes_reuses_the_call(phone: PhoneClient) -> None:
    await add_rep(phone, "Anna")
    first = await _register(phone, EXTERNAL_CALL_ID="pbx-1")
    second = await _register(phone, EXTERNAL_CALL_ID="pbx-1")
    assert second == first  # same CALL_ID, same created records
    other = await _register(phone, EXTERNAL_CALL_ID="pbx-2")
    assert other["CALL_ID"] != first["CALL_ID"]
    assert other["CRM_CREATED_LEAD"] is None  # the number has its lead already
    assert (other["CRM_ENTITY_TYPE"], other["CRM_ENTITY_ID"]) == ("LEAD", first["CRM_ENTITY_ID"])
    # Older than 30 minutes: a new call.
    async with phone.service.db.transaction() as s:
        await s.execute(
            update(ExternalCall)
            .where(ExternalCall.call_id == first["CALL_ID"])
            .values(created_at=datetime.now(UTC) - timedelta(minutes=31))
        )
    later = await _register(phone, EXTERNAL_CALL_ID="pbx-1")
    assert later["CALL_ID"] != first["CALL_ID"]
    assert len(await phone.leads()) == 1


async def test_missed_calls_through_bitrix_make_one_task(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna")
    for i in range(3):
        registered = await _register(phone, EXTERNAL_CALL_ID=f"miss-{i}")
        reply = await phone.bitrix(
            "telephony.externalcall.finish",
            json_body={"CALL_ID": registered["CALL_ID"], "USER_ID": rep, "STATUS_CODE": "304"},
        )
        assert reply.json()["result"]["CALL_STATUS"] == 0
    [task] = await phone.activities("task")
    assert (task.done, task.attempts, task.responsible_id) == (False, 3, rep)
    # The rep calls back (TYPE 1, outgoing) and gets through.
    out = await _register(phone, TYPE=1, EXTERNAL_CALL_ID="back-1")
    assert out["CRM_CREATED_LEAD"] is None
    await phone.bitrix(
        "telephony.externalcall.finish",
        json_body={"CALL_ID": out["CALL_ID"], "USER_ID": rep, "DURATION": 40},
    )
    [task] = await phone.activities("task")
    assert task.done and task.result == "called back"


async def test_search_crm_entities_names_the_holder_and_its_rep(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna", extension="101", phone="+4917600000001")
    contact = await phone.service.crm.records.create_contact(
        ContactInput(name="Erika Muster", phones=("030 123456",), responsible_id=rep)
    )
    # b24pysdk style: POST JSON to a camel-cased method name.
    reply = await phone.bitrix(
        "telephony.externalCall.searchCrmEntities.json", json_body={"PHONE_NUMBER": CALLER}
    )
    assert reply.status == 200, reply.text
    [hit] = reply.json()["result"]
    assert hit["CRM_ENTITY_TYPE"] == "CONTACT" and hit["CRM_ENTITY_ID"] == contact.id
    assert hit["NAME"] == "Erika Muster" and hit["ASSIGNED_BY_ID"] == rep
    assert hit["ASSIGNED_BY"]["USER_PHONE_INNER"] == "101"
    assert hit["ASSIGNED_BY"]["WORK_PHONE"] == "+4917600000001"
    nobody = await phone.bitrix(
        "telephony.externalcall.searchcrmentities", query="PHONE_NUMBER=%2B4940999999"
    )
    assert nobody.json()["result"] == []


async def test_any_unknown_method_answers_as_bitrix24_alone_and_in_a_batch(
    phone: PhoneClient,
) -> None:
    """Whatever the method, outside the telephony namespace too: Bitrix24's own 404 body, the
    same a batch gives for it; credentials are checked first, as Bitrix24 does."""
    not_found = {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
    bad_credentials = {
        "error": "INVALID_CREDENTIALS",
        "error_description": "Invalid request credentials",
    }
    for method in (
        "crm.quote.add",
        "im.notify",
        "user.update.json",
        "telephony.externalLine.rename",
        "telephony.externalcall.transfer",
        "%D0%BC%D0%B5%D1%82%D0%BE%D0%B4",
    ):
        for reply in (
            await phone.bitrix(method, query="X=1"),
            await phone.bitrix(method, json_body={"X": 1}),
        ):
            assert (reply.status, reply.json()) == (404, not_found), method
        in_batch = await phone.bitrix("batch", json_body={"cmd": {"m": method}})
        assert in_batch.json()["result"]["result_error"] == {"m": not_found}, method
        wrong_token = await phone.bitrix(method, query="X=1", token="nope")
        assert (wrong_token.status, wrong_token.json()) == (401, bad_credentials), method
    # A webhook is a user id with its code: a user that cannot be one finds no webhook.
    for user in ("admin", "1a", "%D9%A1", "-1"):
        reply = await phone.bitrix(
            "telephony.externalcall.searchcrmentities", query="X=1", user=user
        )
        assert (reply.status, reply.json()) == (401, bad_credentials), user


async def test_bitrix_errors_in_bitrix_shape(phone: PhoneClient) -> None:
    async def call(method: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        reply = await phone.bitrix(method, **kwargs)
        return reply.status, reply.json()

    status, body = await call("telephony.externalcall.register", query="USER_ID=1", token="nope")
    assert status == 401 and body["error"] == "INVALID_CREDENTIALS"
    status, body = await call("telephony.externalcall.transfer", query="CALL_ID=x")
    assert status == 404 and body["error"] == "ERROR_METHOD_NOT_FOUND"
    status, body = await call("telephony.externalcall.hide", query="CALL_ID=externalCall.nope")
    assert status == 200 and body["result"] is False  # Bitrix24: false for an unknown call
    status, body = await call("telephony.externalcall.register", query="PHONE_NUMBER=1&TYPE=2")
    assert status == 400
    assert body["error_description"] == "USER_ID or USER_PHONE_INNER should be set"
    status, body = await call(
        "telephony.externalcall.register", query=f"USER_ID=99&PHONE_NUMBER={CALLER}&TYPE=2"
    )
    assert status == 400 and "User is not found" in body["error_description"]
    await add_rep(phone, "Anna")
    status, body = await call(
        "telephony.externalcall.register", query=f"USER_ID=1&PHONE_NUMBER={CALLER}&TYPE=9"
    )
    assert status == 400 and body["error_description"] == "Unknown TYPE"
    status, body = await call(
        "telephony.externalcall.finish", json_body={"CALL_ID": "externalCall.nope", "USER_ID": 1}
    )
    assert status == 400 and body["error_description"] == "Call is not found"
    bad_json = await phone._send(
        "POST",
        "/rest/1/b24secret/telephony.externalcall.register",
        data=b"{oops",
        headers={"Content-Type": "application/json"},
    )
    assert bad_json.status == 400 and bad_json.json()["error"] == "INVALID_REQUEST"
    # Over the method's 1 MiB: Bitrix24's error, not the webhooks' JSON 413, with or without
    # a Content-Length to tell it in advance.
    big = b"PHONE_NUMBER=" + b"1" * (1024 * 1024)
    for data in (big, _pieces(big)):
        too_big = await phone._send(
            "POST",
            "/rest/1/b24secret/telephony.externalcall.register",
            data=data,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert too_big.status == 400 and too_big.json()["error"] == "INVALID_REQUEST"
        assert "larger than 1048576 bytes" in too_big.json()["error_description"]
    assert await phone.leads() == []


async def _pieces(body: bytes) -> AsyncIterator[bytes]:
    """A body sent chunked, without a Content-Length."""
    for start in range(0, len(body), 256 * 1024):
        yield body[start : start + 256 * 1024]


async def test_internal_number_is_registered_but_touches_no_crm(phone: PhoneClient) -> None:
    await add_rep(phone, "Anna", extension="101")
    await add_rep(phone, "Ben", extension="102")
    result = await _register(phone, PHONE_NUMBER="102")
    assert result["CALL_ID"] and result["CRM_CREATED_ENTITIES"] == []
    assert await phone.leads() == []
