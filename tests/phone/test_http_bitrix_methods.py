"""Bitrix24 telephony methods besides register / finish, over real HTTP: attachRecord, show /
hide (the call card the rep bot shows), and batch in the shapes real clients send."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy import select

from crm.models import ExternalCall, OutboxMessage
from tests.phone.conftest import BITRIX_TOKEN, PhoneClient, StartPhone, add_rep

CALLER = "+4930123456"
REGISTER = "telephony.externalcall.register"
FINISH = "telephony.externalcall.finish"
ATTACH = "telephony.externalCall.attachRecord"
NOT_FINISHED = "Call is not found in the statistic table. Looks like it is not finished yet."


async def _ok(phone: PhoneClient, method: str, **params: Any) -> Any:
    reply = await phone.bitrix(method, json_body=params)
    assert reply.status == 200, reply.text
    return reply.json()["result"]


async def _cards(phone: PhoneClient) -> list[tuple[str, int | None]]:
    """Call-card outbox rows in order: (shown | hidden, rep)."""
    async with phone.service.db.transaction() as s:
        rows = await s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.kind.in_(["call_shown", "call_hidden"]))
            .order_by(OutboxMessage.id)
        )
        return [(m.kind.removeprefix("call_"), m.rep_id) for m in rows]


# --- attachRecord -----------------------------------------------------------------------------


async def test_attach_record_puts_the_link_on_the_finished_call(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna")
    registered = await _ok(phone, REGISTER, USER_ID=rep, PHONE_NUMBER=CALLER, TYPE=2, CRM_CREATE=1)
    call_id = registered["CALL_ID"]
    early = await phone.bitrix(ATTACH, json_body={"CALL_ID": call_id, "RECORD_URL": "https://r/1"})
    assert early.status == 400
    assert early.json() == {"error": "", "error_description": NOT_FINISHED}
    await _ok(phone, FINISH, CALL_ID=call_id, USER_ID=rep, DURATION=61)
    [call] = await phone.activities("call")
    result = await _ok(
        phone,
        ATTACH,
        CALL_ID=call_id,
        FILENAME="call-001.mp3",
        RECORD_URL="https://pbx.example.com/rec/1.mp3",
    )
    assert result == {
        "FILE_ID": None,  # nothing is downloaded: the link is what is kept
        "CALL_ID": call_id,
        "RECORD_URL": "https://pbx.example.com/rec/1.mp3",
        "CRM_ACTIVITY_ID": call.id,
    }
    [call] = await phone.activities("call")
    assert call.meta is not None
    assert call.meta["recording_url"] == "https://pbx.example.com/rec/1.mp3"
    assert call.meta["recording_filename"] == "call-001.mp3"
    assert call.meta["duration"] == 61  # the rest of the call stays as finish left it
    # A second recording replaces the first (GET with a form-style query this time).
    reply = await phone.bitrix(
        "telephony.externalcall.attachrecord.json",
        query=f"CALL_ID={quote(call_id)}&RECORD_URL={quote('https://pbx.example.com/rec/2.wav')}",
    )
    assert reply.status == 200, reply.text
    [call] = await phone.activities("call")
    assert call.meta is not None and call.meta["recording_url"].endswith("/rec/2.wav")


async def test_attach_record_refuses_what_it_cannot_keep(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna")
    registered = await _ok(phone, REGISTER, USER_ID=rep, PHONE_NUMBER=CALLER, TYPE=2)
    call_id = registered["CALL_ID"]
    await _ok(phone, FINISH, CALL_ID=call_id, USER_ID=rep, DURATION=3)
    cases: list[tuple[dict[str, Any], str, str]] = [
        (
            {},
            "",
            "Required parameters are not set. Request should contain either URL or FILENAME "
            "parameter",
        ),
        (
            {"FILENAME": "call.ogg", "RECORD_URL": "https://r/1.ogg"},
            "ERROR_CORE",
            "Wrong file extension. Only wav and mp3 are allowed",
        ),
        (
            {"FILENAME": "call.mp3", "FILE_CONTENT": "SUQzAwAAAAAiVVRJVDI="},
            "ERROR_CORE",
            "Recording files are not stored by this server: pass RECORD_URL, a link to the "
            "recording",
        ),
        ({"RECORD_URL": "ftp://pbx/1.mp3"}, "ERROR_CORE", "RECORD_URL must be an http(s) URL"),
    ]
    for params, code, description in cases:
        reply = await phone.bitrix(ATTACH, json_body={"CALL_ID": call_id, **params})
        assert reply.status == 400, (params, reply.text)
        assert reply.json() == {"error": code, "error_description": description}
    unknown = await phone.bitrix(ATTACH, json_body={"CALL_ID": "nope", "RECORD_URL": "https://r"})
    assert unknown.status == 400 and unknown.json()["error_description"] == NOT_FINISHED
    # No CRM activity for this call (CRM_CREATE=0, unknown number): the link stays on the call.
    result = await _ok(phone, ATTACH, CALL_ID=call_id, RECORD_URL="https://r/9.mp3")
    assert result["CRM_ACTIVITY_ID"] is None
    async with phone.service.db.transaction() as s:
        row = await s.scalar(select(ExternalCall).where(ExternalCall.call_id == call_id))
        assert row is not None and row.entities is not None
        assert row.entities["record"]["url"] == "https://r/9.mp3"


async def test_attach_record_keeps_a_recording_sent_as_file_content(
    start_phone: StartPhone, tmp_path: Path
) -> None:
    folder = tmp_path / "recordings"
    phone = await start_phone(recordings_dir=str(folder))
    public = phone.service.settings.http.public_url.rstrip("/")
    rep = await add_rep(phone, "Anna")
    registered = await _ok(phone, REGISTER, USER_ID=rep, PHONE_NUMBER=CALLER, TYPE=2, CRM_CREATE=1)
    call_id = registered["CALL_ID"]
    await _ok(phone, FINISH, CALL_ID=call_id, USER_ID=rep, DURATION=61)
    path = f"{phone.base}/rest/1/{BITRIX_TOKEN}/{ATTACH}"

    # As PBX connectors post it: a form body, the base64 "+", "/" and "=" percent-encoded.
    audio = b"ID3\x03\x00" + os.urandom(5000)
    form = urlencode(
        {"CALL_ID": call_id, "FILENAME": "call.mp3", "FILE_CONTENT": base64.b64encode(audio)}
    )
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with phone.http.post(path, data=form, headers=headers) as r:
        assert r.status == 200, await r.text()
        result = (await r.json())["result"]
    url = result["RECORD_URL"]
    assert url.startswith(f"{public}/recordings/") and url.endswith(".mp3")
    [call] = await phone.activities("call")
    assert result["CRM_ACTIVITY_ID"] == call.id
    assert call.meta is not None and call.meta["recording_url"] == url
    async with phone.http.get(phone.base + url.removeprefix(public)) as r:
        assert r.status == 200 and r.content_type == "audio/mpeg"
        assert await r.read() == audio

    # Longer than ordinary requests may be (the service takes 2 MB): a recording can be.
    long_call = os.urandom(3 * 1024 * 1024)
    big = await _ok(
        phone,
        ATTACH,
        CALL_ID=call_id,
        FILENAME="long.wav",
        FILE_CONTENT=base64.encodebytes(long_call).decode(),  # MIME-wrapped lines
    )
    async with phone.http.get(phone.base + big["RECORD_URL"].removeprefix(public)) as r:
        assert r.status == 200 and r.content_type == "audio/wav"
        assert await r.read() == long_call

    kept = sorted(folder.iterdir())
    for params, description in (
        ({"CALL_ID": call_id, "FILE_CONTENT": "not base64!"}, "FILE_CONTENT is not base64"),
        ({"CALL_ID": call_id}, "pass FILE_CONTENT (the recording, base64) or RECORD_URL"),
        ({"CALL_ID": "nope", "FILE_CONTENT": "SUQz"}, NOT_FINISHED),
    ):
        reply = await phone.bitrix(ATTACH, json_body={"FILENAME": "x.mp3", **params})
        assert reply.status == 400 and reply.json()["error_description"] == description
    assert sorted(folder.iterdir()) == kept  # nothing kept for a call that is not there
    for name in ("0" * 32 + ".mp3", "..%2Fsecret.mp3", "abc.mp3", kept[0].name + ".part"):
        async with phone.http.get(f"{phone.base}/recordings/{name}") as r:
            assert r.status == 404, name


# --- show / hide ------------------------------------------------------------------------------


async def test_call_card_shown_and_hidden_per_rep(phone: PhoneClient) -> None:
    anna = await add_rep(phone, "Anna")
    ben = await add_rep(phone, "Ben")
    registered = await _ok(phone, REGISTER, USER_ID=anna, PHONE_NUMBER=CALLER, TYPE=2, CRM_CREATE=1)
    call_id = registered["CALL_ID"]
    assert await _cards(phone) == [("shown", anna)]  # SHOW defaults to 1
    async with phone.service.db.transaction() as s:
        shown = await s.scalar(select(OutboxMessage).where(OutboxMessage.kind == "call_shown"))
        assert shown is not None
        card = shown.payload
    [lead] = await phone.leads()
    assert card["phone"] == CALLER and card["incoming"] is True
    assert card["records"] == [["lead", lead.id, lead.title]]
    # USER_ID as an array (PHP style); Anna has the card already, so only Ben gets one.
    reply = await phone.bitrix(
        "telephony.externalCall.show",
        query=f"CALL_ID={quote(call_id)}&USER_ID[]={anna}&USER_ID[]={ben}",
    )
    assert reply.status == 200 and reply.json()["result"] is True
    assert await _cards(phone) == [("shown", anna), ("shown", ben)]
    assert await _ok(phone, "telephony.externalcall.hide", CALL_ID=call_id, USER_ID=ben) is True
    assert await _cards(phone) == [("shown", anna), ("shown", ben), ("hidden", ben)]
    unknown = await phone.bitrix(
        "telephony.externalcall.show", json_body={"CALL_ID": call_id, "USER_ID": [ben, 77]}
    )
    assert unknown.status == 400
    assert unknown.json()["error_description"] == "User is not found or is not active"
    # Finishing the call takes the card away from everybody who still has it.
    await _ok(phone, FINISH, CALL_ID=call_id, USER_ID=anna, DURATION=20)
    assert (await _cards(phone))[-1] == ("hidden", anna)
    # The call is over: Bitrix24 answers false.
    assert await _ok(phone, "telephony.externalcall.show", CALL_ID=call_id) is False
    assert await _ok(phone, "telephony.externalcall.hide", CALL_ID=call_id) is False
    assert len(await _cards(phone)) == 4


async def test_show_zero_shows_nothing(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna")
    registered = await _ok(phone, REGISTER, USER_ID=rep, PHONE_NUMBER=CALLER, TYPE=1, SHOW=0)
    assert await _cards(phone) == []
    # Shown later on request (default: the rep the call was registered for).
    assert await _ok(phone, "telephony.externalcall.show", CALL_ID=registered["CALL_ID"]) is True
    assert await _cards(phone) == [("shown", rep)]


# --- batch ------------------------------------------------------------------------------------


async def test_batch_runs_commands_in_order_with_results_of_earlier_ones(
    phone: PhoneClient,
) -> None:
    rep = await add_rep(phone, "Anna")
    # fast_bitrix24 style: POST JSON, every command a URL-encoded query.
    body = {
        "halt": 0,
        "cmd": {
            "reg": f"telephony.externalcall.register?USER_ID={rep}&PHONE_NUMBER=%2B4930123456"
            "&TYPE=2&CRM_CREATE=1&SHOW=0",
            "fin": f"telephony.externalcall.finish?CALL_ID=$result[reg][CALL_ID]&USER_ID={rep}"
            "&DURATION=42",
            "who": "telephony.externalCall.searchCrmEntities?PHONE_NUMBER=%2B4930123456",
        },
    }
    reply = await phone.bitrix("batch", json_body=body)
    assert reply.status == 200, reply.text
    outer = reply.json()
    assert set(outer["time"]) >= {"start", "finish", "duration", "operating"}
    batch = outer["result"]
    assert set(batch) == {"result", "result_error", "result_total", "result_next", "result_time"}
    assert batch["result_error"] == [] and batch["result_total"] == []
    assert batch["result_next"] == []
    results = batch["result"]
    [lead] = await phone.leads()
    [call] = await phone.activities("call")
    assert results["reg"]["CRM_CREATED_LEAD"] == lead.id
    assert results["fin"]["CALL_ID"] == results["reg"]["CALL_ID"]
    assert (results["fin"]["CALL_DURATION"], results["fin"]["CRM_ACTIVITY_ID"]) == (42, call.id)
    assert [hit["CRM_ENTITY_ID"] for hit in results["who"]] == [lead.id]
    assert set(batch["result_time"]) == {"reg", "fin", "who"}
    assert set(batch["result_time"]["reg"]) == {
        "start", "finish", "duration", "processing", "date_start", "date_finish"
    }  # fmt: skip


async def test_batch_errors_and_halt(phone: PhoneClient) -> None:
    rep = await add_rep(phone, "Anna")
    search = "telephony.externalcall.searchcrmentities?PHONE_NUMBER=%2B4930123456"
    bad = "telephony.externalcall.register?PHONE_NUMBER=1&TYPE=2"
    # GET with bracketed cmd, double-encoded as the Bitrix24 docs show.
    query = f"halt=0&cmd[a]={quote(bad)}&cmd[b]={quote(search)}&cmd[c]=crm.quote.add&cmd[d]=batch"
    reply = await phone.bitrix("batch.json", query=query)
    assert reply.status == 200, reply.text
    batch = reply.json()["result"]
    assert batch["result"] == {"b": []}
    no_user = "USER_ID or USER_PHONE_INNER should be set"
    assert batch["result_error"] == {
        "a": {"error": "ERROR_CORE", "error_description": no_user},
        "c": {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
        "d": {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
              "error_description": "Method is not allowed for batch usage"},
    }  # fmt: skip
    # halt=1 stops at the first error: nothing after it runs.
    halted = await phone.bitrix(
        "BATCH",
        json_body={
            "halt": 1,
            "cmd": [
                f"telephony.externalcall.register?USER_ID={rep}&PHONE_NUMBER=%2B4930555&TYPE=9",
                f"telephony.externalcall.register?USER_ID={rep}&PHONE_NUMBER=%2B4930555&TYPE=2"
                "&CRM_CREATE=1",
            ],
        },
    )
    body = halted.json()["result"]
    assert body["result"] == [] and body["result_time"] == []
    assert body["result_error"] == [{"error": "ERROR_CORE", "error_description": "Unknown TYPE"}]
    assert await phone.leads() == []
    # A list of commands answers a list of results.
    listed = await phone.bitrix("batch", json_body={"cmd": [search, search]})
    assert listed.json()["result"]["result"] == [[], []]
    too_many = await phone.bitrix("batch", json_body={"cmd": {f"c{i}": search for i in range(51)}})
    assert too_many.status == 400
    assert too_many.json()["error"] == "ERROR_BATCH_LENGTH_EXCEEDED"
    wrong = await phone.bitrix("batch", json_body={"cmd": "telephony.externalcall.show"})
    assert wrong.status == 400 and wrong.json()["error"] == "INVALID_REQUEST"
