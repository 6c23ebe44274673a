"""Nothing a client sends to the three call formats produces a 500: arbitrary bodies, headers
and parameters, most of them validly signed so they get past authentication to the parsers
and into intake."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from channels.phone.signatures import sign_generic
from tests.phone.conftest import BITRIX_TOKEN, PUBLIC, SECRET, TWILIO_TOKEN, PhoneClient, add_rep

# One running service serves every example; SQLite keeps it quick (the rules run on both).
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])
RUNS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

CALL = "@call-id@"  # replaced by a real registered CALL_ID
_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
_call_docs = st.fixed_dictionaries(
    {
        "event": st.sampled_from(["call.ringing", "call.answered", "call.ended", "call.missed"])
        | _json,
        "call_id": st.text(min_size=1, max_size=8) | _json,
        "direction": st.sampled_from(["incoming", "outgoing", "sideways"]) | _json,
    },
    optional={
        "from": st.sampled_from(["+4930123456", "anonymous", "030 1234", "101", ""]) | _json,
        "to": _json,
        "duration": st.integers(-5, 10**8) | _json,
        "disposition": st.sampled_from(["answered", "busy", "x"]) | _json,
        "timestamp": st.sampled_from(["2024-05-14T09:00:00Z", "yesterday", 1e20]) | _json,
        "recording_url": st.sampled_from(["https://r.example/1", "javascript:x"]) | _json,
        "agent_extension": _json,
    },
)
_bodies = _call_docs.map(lambda d: json.dumps(d).encode()) | st.binary(max_size=200)
_words = st.text(max_size=20)
_twilio_forms = st.dictionaries(
    st.sampled_from(
        [
            "CallSid",
            "Direction",
            "CallStatus",
            "DialCallStatus",
            "From",
            "To",
            "CallDuration",
            "DialCallDuration",
            "Timestamp",
            "RecordingUrl",
            "CallerName",
        ]
    )
    | _words,
    st.sampled_from(["CA1", "inbound", "outbound-dial", "completed", "no-answer", "client:a"])
    | st.sampled_from(["+4930123456", "anonymous", "12", "Tue, 14 May 2024 09:00:00 +0000"])
    | _words,
    max_size=8,
)
_bitrix_params = st.dictionaries(
    st.sampled_from(
        [
            "USER_ID",
            "USER_PHONE_INNER",
            "PHONE_NUMBER",
            "TYPE",
            "CALL_START_DATE",
            "CALL_ID",
            "DURATION",
            "STATUS_CODE",
            "RECORD_URL",
            "CRM_CREATE",
            "CRM_ENTITY_TYPE",
            "CRM_ENTITY_ID",
            "SHOW",
            "USER_ID[]",
            "FILENAME",
            "FILE_CONTENT",
            "halt",
            "fields[PHONE][0][VALUE]",
            "a[][b]",
        ]
    )
    | _words,
    st.sampled_from(
        [
            "1",
            "2",
            "0",
            "+4930123456",
            "2024-05-14T09:00:00",
            "304",
            "nan",
            "CONTACT",
            "lead",
            "https://r.example/1.mp3",
            "x.wav",
            "SUQz",
            "$result[a][CALL_ID]",
            CALL,
        ]
    )
    | _words,
    max_size=6,
)
_method_names = [
    "telephony.externalcall.register",
    "telephony.externalCall.finish.json",
    "TELEPHONY.EXTERNALCALL.SEARCHCRMENTITIES",
    "telephony.externalcall.show",
    "telephony.externalCall.hide",
    "telephony.externalCall.attachRecord",
    "telephony.externalcall.nope",
    "batch",
]
_bitrix_methods = st.sampled_from(_method_names)
# Parameters that get a method past its checks, so that the drawn ones reach the CRM.
_VALID: dict[str, dict[str, str]] = {
    "register": {"USER_ID": "1", "PHONE_NUMBER": "+4930123456", "TYPE": "2"},
    "finish": {"USER_ID": "1", "CALL_ID": CALL},
    "searchcrmentities": {"PHONE_NUMBER": "+4930123456"},
    "show": {"CALL_ID": CALL},
    "hide": {"CALL_ID": CALL},
    "attachrecord": {"CALL_ID": CALL, "RECORD_URL": "https://r.example/1.mp3"},
}


def _based(method: str, params: dict[str, str], valid: bool) -> dict[str, str]:
    """With `valid`, the drawn parameters on top of ones that pass the method's checks."""
    base = _VALID.get(method.lower().removesuffix(".json").rpartition(".")[2], {})
    return {**base, **params} if valid else params


# Batch commands: "method?query" built from the same parameters, or anything at all.
_commands = st.builds(
    lambda method, params, valid: f"{method}?{urlencode(_based(method, params, valid))}",
    st.sampled_from(_method_names) | _words,
    _bitrix_params,
    st.booleans(),
)
_batch_bodies = st.fixed_dictionaries(
    {"cmd": st.dictionaries(st.sampled_from(["a", "b", "0", "1"]) | _words, _commands | _json)
     | st.lists(_commands, max_size=4) | _json},
    optional={"halt": _json},
)  # fmt: skip


async def _call_id(phone: PhoneClient) -> str:
    """A rep (id 1, extension 101) and a registered call, made once per running service, so
    examples get past the user check and can name a real CALL_ID (the `CALL` placeholder)."""
    known: str | None = getattr(phone, "property_call_id", None)
    if known is not None:
        return known
    rep = await add_rep(phone, "Anna", extension="101")
    body = {"USER_ID": rep, "PHONE_NUMBER": "+4930123456", "TYPE": 2, "CRM_CREATE": 1}
    reply = await phone.bitrix("telephony.externalcall.register", json_body=body)
    call_id = str(reply.json()["result"]["CALL_ID"])
    phone.property_call_id = call_id  # type: ignore[attr-defined]
    return call_id


def _with_call(value: Any, call_id: str) -> Any:
    if isinstance(value, str):
        return value.replace(CALL, call_id)
    if isinstance(value, dict):
        return {k: _with_call(v, call_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_call(v, call_id) for v in value]
    return value


async def _status(phone: PhoneClient, method: str, path: str, **kwargs: Any) -> int:
    reply = await phone._send(method, path, **kwargs)
    assert reply.status < 500, (path, reply.text)
    return reply.status


@RUNS
@given(body=_bodies, signed=st.booleans(), header=st.text(max_size=80))
async def test_generic_webhook_never_fails(
    phone: PhoneClient, body: bytes, signed: bool, header: str
) -> None:
    value = sign_generic(SECRET, int(time.time()), body) if signed else header
    headers = {"X-Leadbot-Signature": value} if value.isprintable() else {}
    status = await _status(phone, "POST", "/hooks/calls", data=body, headers=headers)
    assert signed or status == 401


@RUNS
@given(form=_twilio_forms, path=st.sampled_from(["/hooks/twilio/voice", "/hooks/twilio/status"]))
async def test_twilio_endpoints_never_fail(
    phone: PhoneClient, form: dict[str, str], path: str
) -> None:
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(PUBLIC + path, form)
    headers = {
        "X-Twilio-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    status = await _status(phone, "POST", path, data=urlencode(form).encode(), headers=headers)
    assert status != 401


@RUNS
@given(method=_bitrix_methods, params=_bitrix_params, as_json=st.booleans(), valid=st.booleans())
async def test_bitrix_rest_never_fails(
    phone: PhoneClient, method: str, params: dict[str, str], as_json: bool, valid: bool
) -> None:
    params = _with_call(_based(method, params, valid), await _call_id(phone))
    path = f"/rest/1/{BITRIX_TOKEN}/{method}"
    if as_json:
        await _status(phone, "POST", path, json=params)
    else:
        query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())
        await _status(phone, "GET", f"{path}?{query}")


@RUNS
@given(body=_batch_bodies, as_json=st.booleans())
async def test_bitrix_batch_never_fails(
    phone: PhoneClient, body: dict[str, Any], as_json: bool
) -> None:
    body = _with_call(body, await _call_id(phone))
    path = f"/rest/1/{BITRIX_TOKEN}/batch"
    if as_json:
        await _status(phone, "POST", path, json=body)
        return
    cmd = body["cmd"]
    items = (
        cmd.items() if isinstance(cmd, dict) else enumerate(cmd if isinstance(cmd, list) else [])
    )
    query = "&".join(f"cmd[{quote(str(k))}]={quote(str(v))}" for k, v in items)
    await _status(phone, "GET", f"{path}?halt={quote(str(body.get('halt', 0)))}&{query}")
