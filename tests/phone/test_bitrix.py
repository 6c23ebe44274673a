"""Bitrix24 telephony REST: PHP bracket parameters as real clients send them, validation with
Bitrix24's error texts, mapping to CallReport and the response shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from channels.phone.bitrix import (
    CallType,
    finish_report,
    parse_card,
    parse_finish,
    parse_register,
    parse_search,
    register_key,
    register_report,
    status_from,
)
from channels.phone.bitrix_batch import (
    parse_batch,
    split_command,
    substitute,
)
from channels.phone.bitrix_params import (
    BitrixError,
    nest_params,
    normalize_method,
    parse_bitrix_params,
    resolve_method,
)
from channels.phone.bitrix_replies import (
    EntityHit,
    Timing,
    batch_result,
    bitrix_error,
    bitrix_result,
    command_time,
    finish_result,
    php_array,
    register_result,
    search_result,
)
from channels.phone.calls import CallDirection, CallStage, Disposition

FORM = "application/x-www-form-urlencoded"


# --- method names and parameter parsing -------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "telephony.externalcall.register",
        "telephony.externalCall.register.json",
        "TELEPHONY.EXTERNALCALL.REGISTER.JSON",
    ],
)
def test_method_names_are_case_insensitive_with_optional_json(name: str) -> None:
    assert normalize_method(name) == "telephony.externalcall.register"
    assert resolve_method(name) == "telephony.externalcall.register"


def test_unknown_method_is_bitrix_404() -> None:
    with pytest.raises(BitrixError) as caught:
        resolve_method("crm.lead.add.xml")
    assert (caught.value.code, caught.value.status) == ("ERROR_METHOD_NOT_FOUND", 404)


def test_get_query_like_a_pbx_connector_sends() -> None:
    query = "USER_ID=1&PHONE_NUMBER=%2B4930123456&TYPE=2&CRM_CREATE=1"
    params = parse_bitrix_params(query, None, b"")
    assert params == {"USER_ID": "1", "PHONE_NUMBER": "+4930123456", "TYPE": "2", "CRM_CREATE": "1"}
    request = parse_register(params)
    assert request.user_id == 1
    assert request.phone_number == "+4930123456"
    assert request.type is CallType.INCOMING
    assert request.crm_create is True


def test_unencoded_plus_from_a_sloppy_client_is_restored() -> None:
    params = parse_bitrix_params(b"USER_ID=1&PHONE_NUMBER=+49+30+1234567&TYPE=2", None, b"")
    assert parse_register(params).phone_number == "+49 30 1234567"


def test_bracket_params_become_nested_dicts_and_lists() -> None:
    query = (
        "fields[TITLE]=Anfrage%20A%26B%20%231&fields[PHONE][0][VALUE]=%2B49%2030%20123"
        "&fields[PHONE][0][VALUE_TYPE]=WORK&values[]=a&values[]=b&select[]=ID"
        "&filter[%3E%3DDATE]=2024&order[ID]=ASC"
    )
    assert parse_bitrix_params(query, None, b"") == {
        "fields": {
            "TITLE": "Anfrage A&B #1",
            "PHONE": [{"VALUE": "+49 30 123", "VALUE_TYPE": "WORK"}],
        },
        "values": ["a", "b"],
        "select": ["ID"],
        "filter": {">=DATE": "2024"},
        "order": {"ID": "ASC"},
    }


def test_php_edge_cases() -> None:
    pairs = [
        ("USER_ID[0]", "11"),
        ("USER_ID[2]", "31"),  # a gap: stays a map, like a PHP array with keys 0 and 2
        ("a", "plain"),
        ("a[b]", "nested"),  # later bracket form replaces the plain value
        ("broken[x", "kept"),  # no closing bracket: a plain key
        ("tail[x]y", "1"),  # text after the last ] is ignored
        ("list[]", "p"),
        ("list[5]", "q"),
        ("list[]", "r"),  # appends after the largest integer key
    ]
    assert nest_params(pairs) == {
        "USER_ID": {"0": "11", "2": "31"},
        "a": {"b": "nested"},
        "broken[x": "kept",
        "tail": {"x": "1"},
        "list": {"0": "p", "5": "q", "6": "r"},
    }


def test_json_body_overrides_the_query_and_keeps_types() -> None:
    body = json.dumps({"USER_ID": 7, "PHONE_NUMBER": "+4930123456", "TYPE": 1, "SHOW": 0}).encode()
    params = parse_bitrix_params("TYPE=2&auth=x", "application/json; charset=utf-8", body)
    assert params["TYPE"] == 1 and params["auth"] == "x"
    request = parse_register(params)
    assert (request.user_id, request.type, request.show) == (7, CallType.OUTGOING, False)


def test_form_and_multipart_bodies() -> None:
    form = parse_bitrix_params("", FORM, b"fields%5BPHONE%5D%5B0%5D%5BVALUE%5D=%2B4930")
    assert form == {"fields": {"PHONE": [{"VALUE": "+4930"}]}}
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="CALL_ID"\r\n\r\nexternalCall.1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="DURATION"\r\n\r\n42\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    params = parse_bitrix_params("", f"multipart/form-data; boundary={boundary}", body)
    assert params == {"CALL_ID": "externalCall.1", "DURATION": "42"}


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("application/json", b"{nope", "not valid JSON"),
        ("application/json", b"[1, 2]", "must be an object"),
        ("text/xml", b"<a/>", "unsupported content type"),
        (FORM, b"&".join(b"a%d=1" % i for i in range(1001)), "more than 1000"),
        (FORM, b"a" + b"[x]" * 20 + b"=1", "nested too deeply"),
    ],
)
def test_unreadable_bodies_are_400(content_type: str, body: bytes, reason: str) -> None:
    with pytest.raises(BitrixError) as caught:
        parse_bitrix_params("", content_type, body)
    assert caught.value.status == 400
    assert reason in caught.value.description


# --- register / finish / search validation ----------------------------------------------------

REGISTER = {"USER_ID": "1", "PHONE_NUMBER": "+4930123456", "TYPE": "2"}


def test_register_with_every_field() -> None:
    request = parse_register(
        {
            **REGISTER,
            "USER_ID": "",
            "USER_PHONE_INNER": "101",
            "TYPE": "3",
            "CALL_START_DATE": "2024-05-14T11:43:02+03:00",
            "CRM_CREATE": "1",
            "CRM_SOURCE": "CALL",
            "CRM_ENTITY_TYPE": "contact",
            "CRM_ENTITY_ID": "275",
            "SHOW": "0",
            "LINE_NUMBER": "+4989111222",
            "EXTERNAL_CALL_ID": "pbx-1",
        }
    )
    assert request.user_id is None and request.user_phone_inner == "101"
    assert request.type is CallType.INCOMING_REDIRECTED
    assert request.call_start_date == datetime(
        2024, 5, 14, 11, 43, 2, tzinfo=timezone(timedelta(hours=3))
    )
    assert (request.crm_entity_type, request.crm_entity_id) == ("CONTACT", 275)
    assert request.show is False and request.crm_create is True
    assert (request.line_number, request.external_call_id) == ("+4989111222", "pbx-1")


def test_register_defaults() -> None:
    request = parse_register(REGISTER)
    assert request.show is True and request.crm_create is False and request.add_to_chat is True
    assert request.call_start_date is None
    naive = parse_register({**REGISTER, "CALL_START_DATE": "2024-05-14 11:43:02"}, tz=UTC)
    assert naive.call_start_date == datetime(2024, 5, 14, 11, 43, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "description"),
    [
        ({"USER_ID": None}, "USER_ID or USER_PHONE_INNER should be set"),
        ({"USER_ID": "abc"}, "USER_ID or USER_PHONE_INNER should be set"),
        ({"USER_ID": "0", "USER_PHONE_INNER": ""}, "USER_ID or USER_PHONE_INNER should be set"),
        ({"TYPE": "9"}, "Unknown TYPE"),
        ({"TYPE": "two"}, "Unknown TYPE"),
        ({"TYPE": None}, "Unknown TYPE"),
        ({"TYPE": ["2"]}, "Unknown TYPE"),
        ({"PHONE_NUMBER": None}, "PHONE_NUMBER is empty"),
        ({"PHONE_NUMBER": "anonymous"}, "Unsupported phone number format"),
        ({"PHONE_NUMBER": {"a": "1"}}, "PHONE_NUMBER must be a string"),
        ({"CALL_START_DATE": "14.05.2024"}, "CALL_START_DATE should be in the ISO-8601 format"),
        ({"CRM_ENTITY_TYPE": "DEAL", "CRM_ENTITY_ID": "1"}, "CRM_ENTITY_TYPE should be"),
        ({"CRM_ENTITY_TYPE": "LEAD"}, "CRM_ENTITY_ID should be set"),
        ({"SHOW": "maybe"}, "SHOW must be 0 or 1"),
    ],
)
def test_register_errors_mirror_bitrix(fields: dict[str, Any], description: str) -> None:
    params = {k: v for k, v in {**REGISTER, **fields}.items() if v is not None}
    with pytest.raises(BitrixError) as caught:
        parse_register(params)
    assert (caught.value.code, caught.value.status) == ("ERROR_CORE", 400)
    assert description in caught.value.description


@pytest.mark.parametrize(
    ("code", "duration", "expected"),
    [
        (None, 30, "200"),
        (None, 0, "304"),
        ("", None, "304"),
        ("486", 0, "486"),
        ("603-s", 5, "603-S"),
    ],
)
def test_status_default_from_duration(
    code: str | None, duration: int | None, expected: str
) -> None:
    assert status_from(code, duration) == expected


def test_finish_request() -> None:
    request = parse_finish(
        {
            "CALL_ID": "externalCall.abc.1715665607",
            "USER_ID": 16,
            "DURATION": "65",
            "RECORD_URL": "https://pbx.example/r.mp3",
            "VOTE": "5",
            "COST": "0.12",
            "COST_CURRENCY": "EUR",
        }
    )
    assert request.status_code == "200"
    assert (request.duration, request.vote, request.cost) == (65, 5, 0.12)
    assert parse_finish({"CALL_ID": "c", "USER_ID": "1"}).status_code == "304"


@pytest.mark.parametrize(
    ("params", "code", "description"),
    [
        ({"CALL_ID": "c"}, "ERROR_CORE", "USER_ID or USER_PHONE_INNER should be set"),
        ({"USER_ID": "1"}, "INVALID_ARGUMENT", "CALL_ID must be a string"),
        ({"USER_ID": "1", "CALL_ID": 5}, "INVALID_ARGUMENT", "CALL_ID must be a string"),
        ({"USER_ID": "1", "CALL_ID": "c", "DURATION": "long"}, "ERROR_CORE", "DURATION"),
        ({"USER_ID": "1", "CALL_ID": "c", "DURATION": "-3"}, "ERROR_CORE", "negative"),
        ({"USER_ID": "1", "CALL_ID": "c", "VOTE": "9"}, "ERROR_CORE", "VOTE"),
        ({"USER_ID": "1", "CALL_ID": "c", "RECORD_URL": "ftp://x"}, "ERROR_CORE", "RECORD_URL"),
    ],
)
def test_finish_errors(params: dict[str, Any], code: str, description: str) -> None:
    with pytest.raises(BitrixError) as caught:
        parse_finish(params)
    assert caught.value.code == code
    assert description in caught.value.description


def test_search_needs_a_phone() -> None:
    assert parse_search({"PHONE_NUMBER": "+4930123456"}).phone_number == "+4930123456"
    with pytest.raises(BitrixError, match="PHONE_NUMBER is empty"):
        parse_search({})


# --- mapping and responses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call_type", "direction"),
    [
        ("1", CallDirection.OUTGOING),
        ("2", CallDirection.INCOMING),
        ("3", CallDirection.INCOMING),
        ("4", CallDirection.OUTGOING),  # a callback is us calling
    ],
)
def test_register_report_direction_and_parties(call_type: str, direction: CallDirection) -> None:
    request = parse_register({**REGISTER, "TYPE": call_type, "LINE_NUMBER": "+4989111222"})
    report = register_report(request, "externalCall.x.1")
    assert report.direction is direction
    assert report.stage is CallStage.RINGING
    assert report.customer_number == "+4930123456"
    assert report.line == "+4989111222"


@pytest.mark.parametrize(
    ("status", "duration", "stage", "disposition"),
    [
        (None, 12, CallStage.ENDED, Disposition.ANSWERED),
        (None, 0, CallStage.MISSED, Disposition.MISSED),
        ("304", 0, CallStage.MISSED, Disposition.MISSED),
        ("603", 0, CallStage.MISSED, Disposition.DECLINED),
        ("603-S", 0, CallStage.MISSED, Disposition.CANCELLED),
        ("486", 0, CallStage.MISSED, Disposition.BUSY),
        ("404", 0, CallStage.MISSED, Disposition.FAILED),
    ],
)
def test_finish_report_outcome(
    status: str | None, duration: int, stage: CallStage, disposition: Disposition
) -> None:
    params: dict[str, Any] = {"CALL_ID": "c", "USER_ID": "1", "DURATION": duration}
    if status:
        params["STATUS_CODE"] = status
    report = finish_report(parse_finish(params), parse_register(REGISTER))
    assert (report.stage, report.disposition, report.duration) == (stage, disposition, duration)
    assert report.call_id == "c"


def test_register_key_ignores_formatting_but_not_the_call() -> None:
    key = register_key(1, "+49 (30) 123-456", 2, "line1", None)
    assert key == register_key(1, "+4930123456", CallType.INCOMING, "line1", None)
    assert key != register_key(2, "+4930123456", 2, "line1", None)
    assert key != register_key(1, "+4930123456", 1, "line1", None)
    assert key != register_key(1, "+4930123456", 2, "line2", None)
    assert key != register_key(1, "+4930123456", 2, "line1", "ext-1")
    assert key != register_key(1, "+4930123456", 2, "line1", None, app="hook-2")


def test_response_shapes() -> None:
    timing = Timing(start=1715665600.25, finish=1715665600.5, operating=0.1)
    reply = bitrix_result(
        register_result("externalCall.x.1", created=[("LEAD", 9)], entity=("LEAD", 9)), timing
    )
    assert reply["result"] == {
        "CALL_ID": "externalCall.x.1",
        "CRM_CREATED_LEAD": 9,
        "CRM_CREATED_ENTITIES": [{"ENTITY_TYPE": "LEAD", "ENTITY_ID": 9}],
        "CRM_ENTITY_TYPE": "LEAD",
        "CRM_ENTITY_ID": 9,
    }
    assert reply["time"]["duration"] == 0.25 == reply["time"]["processing"]
    assert reply["time"]["date_start"] == "2024-05-14T05:46:40+00:00"
    assert reply["time"]["operating"] == 0.1
    assert set(reply["time"]) == {
        "start",
        "finish",
        "duration",
        "processing",
        "date_start",
        "date_finish",
        "operating_reset_at",
        "operating",
    }
    json.dumps(reply)  # must be serializable as is
    assert bitrix_error("ERROR_CORE", "Unknown TYPE") == {
        "error": "ERROR_CORE",
        "error_description": "Unknown TYPE",
    }


def test_finish_and_search_results() -> None:
    registration = parse_register({**REGISTER, "LINE_NUMBER": "+4989111222"})
    finish = parse_finish({"CALL_ID": "c", "USER_ID": "1", "STATUS_CODE": "486"})
    result = finish_result(finish, registration, user_id=1, activity_id=77, entity=("CONTACT", 5))
    assert result["CALL_STATUS"] == 0 and result["CALL_FAILED_CODE"] == "486"
    assert result["INCOMING"] == 2 and result["PORTAL_NUMBER"] == "+4989111222"
    assert result["CRM_ACTIVITY_ID"] == 77
    hits = search_result([EntityHit("CONTACT", 5, "Anna Meier", 3, user_phone_inner="101")])
    assert hits[0]["CRM_ENTITY_ID"] == 5
    assert hits[0]["ASSIGNED_BY"]["USER_PHONE_INNER"] == "101"
    assert hits[0]["ASSIGNED_BY_ID"] == 3


# --- show / hide, batch -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "expected"),
    [(None, ()), ("7", (7,)), (7, (7,)), (["3", 4, "3"], (3, 4)), ({"0": "5", "1": "6"}, (5, 6))],
)
def test_card_users_one_or_many(user_id: Any, expected: tuple[int, ...]) -> None:
    params = {"CALL_ID": " externalCall.x.1 "}
    if user_id is not None:
        params["USER_ID"] = user_id
    request = parse_card(params)
    assert (request.call_id, request.user_ids) == ("externalCall.x.1", expected)


@pytest.mark.parametrize("user_id", ["abc", 0, -2, [1, {"a": 1}], list(range(1, 60))])
def test_card_users_must_be_ids(user_id: Any) -> None:
    with pytest.raises(BitrixError) as caught:
        parse_card({"CALL_ID": "c", "USER_ID": user_id})
    assert caught.value.code == "ERROR_CORE"


def test_batch_commands_and_keys() -> None:
    halt, commands = parse_batch(nest_params([("halt", "1"), ("cmd[a]", "x?y=1"), ("cmd[7]", "z")]))
    assert halt is True
    assert [(c.key, c.command) for c in commands] == [("a", "x?y=1"), (7, "z")]
    assert parse_batch({}) == (False, [])
    _, listed = parse_batch({"cmd": ["a", "b"]})
    assert [c.key for c in listed] == [0, 1]
    method, params = split_command(
        "telephony.externalCall.Finish.json?CALL_ID=c&USER_ID=1&fields%5BA%5D%5B%5D=%2B1"
    )
    assert method == "telephony.externalcall.finish"
    assert params == {"CALL_ID": "c", "USER_ID": "1", "fields": {"A": ["+1"]}}


def test_batch_references_to_earlier_results() -> None:
    results: dict[str | int, Any] = {
        "reg": {"CALL_ID": "externalCall.x.1", "CRM_ENTITY_ID": 5, "LIST": [{"ID": 9}]},
        0: [{"CRM_ENTITY_ID": 3}],
    }
    params = {
        "CALL_ID": "$result[reg][CALL_ID]",
        "ID": "$result[reg][CRM_ENTITY_ID]",  # a whole reference keeps the type
        "TEXT": "lead $result[reg][LIST][0][ID] of $result[0][0][CRM_ENTITY_ID]",
        "MISSING": "$result[nope][X]",
        "OBJECT": "$result[reg]",  # not a scalar: left as written
        "NESTED": {"A": ["$result[reg][CALL_ID]"]},
    }
    assert substitute(params, results) == {
        "CALL_ID": "externalCall.x.1",
        "ID": 5,
        "TEXT": "lead 9 of 3",
        "MISSING": "$result[nope][X]",
        "OBJECT": "$result[reg]",
        "NESTED": {"A": ["externalCall.x.1"]},
    }


def test_batch_result_is_php_shaped() -> None:
    assert php_array({}) == [] and php_array({0: "a", 1: "b"}) == ["a", "b"]
    assert php_array({1: "a"}) == {"1": "a"} and php_array({"x": 1}) == {"x": 1}
    timing = command_time(Timing(start=1715665600.0, finish=1715665600.5))
    assert set(timing) == {"start", "finish", "duration", "processing", "date_start", "date_finish"}
    result = batch_result({"a": True}, {}, {"a": timing})
    assert result == {
        "result": {"a": True},
        "result_error": [],
        "result_total": [],
        "result_next": [],
        "result_time": {"a": timing},
    }
