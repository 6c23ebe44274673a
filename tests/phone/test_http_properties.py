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
from tests.phone.conftest import BITRIX_TOKEN, PUBLIC, SECRET, TWILIO_TOKEN, PhoneClient

# One running service serves every example; SQLite keeps it quick (the rules run on both).
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])
RUNS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

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
            "fields[PHONE][0][VALUE]",
            "a[][b]",
        ]
    )
    | _words,
    st.sampled_from(["1", "2", "0", "+4930123456", "2024-05-14T09:00:00", "304", "nan"]) | _words,
    max_size=6,
)
_bitrix_methods = st.sampled_from(
    [
        "telephony.externalcall.register",
        "telephony.externalCall.finish.json",
        "TELEPHONY.EXTERNALCALL.SEARCHCRMENTITIES",
        "telephony.externalcall.nope",
    ]
)


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
@given(method=_bitrix_methods, params=_bitrix_params, as_json=st.booleans())
async def test_bitrix_rest_never_fails(
    phone: PhoneClient, method: str, params: dict[str, str], as_json: bool
) -> None:
    path = f"/rest/1/{BITRIX_TOKEN}/{method}"
    if as_json:
        await _status(phone, "POST", path, json=params)
    else:
        query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())
        await _status(phone, "GET", f"{path}?{query}")
