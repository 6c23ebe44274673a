"""A refused webhook is visible from Leadbot's side: counted in /metrics by route and status,
logged with the reason the sender was given (a Twilio signature names the URL it was checked
against), at most one line a minute per route and status, and never with a token in it."""

from __future__ import annotations

import logging
import re

import pytest

from tests.phone.conftest import BITRIX_TOKEN, PUBLIC, PhoneClient, StartPhone


async def _metric(phone: PhoneClient, route: str, status: int) -> float:
    reply = await phone._send("GET", "/metrics")
    pattern = rf'leadbot_http_refused_total\{{route="{re.escape(route)}",status="{status}"\}} (\S+)'
    found = re.search(pattern, reply.text)
    return float(found.group(1)) if found else 0.0


async def test_refused_webhooks_are_counted_and_logged_once_a_minute(
    start_phone: StartPhone, caplog: pytest.LogCaptureFixture
) -> None:
    phone = await start_phone()
    caplog.set_level(logging.WARNING, logger="leadbot.refused")
    form = {"CallSid": "CA1", "From": "+4930123456", "To": "+4940123456", "CallStatus": "ringing"}
    # Signed over the address the service listens on, not the public URL it is configured with
    # (what a changed port or a proxy does): refused, and the answer says which URL counted.
    for _ in range(3):
        reply = await phone.twilio("/hooks/twilio/voice", form, public=phone.base)
        assert reply.status == 401
        assert f"checked against {PUBLIC}/hooks/twilio/voice" in reply.json()["detail"]
    assert await _metric(phone, "/hooks/twilio/voice", 401) == 3
    lines = [r.getMessage() for r in caplog.records if r.name == "leadbot.refused"]
    assert len(lines) == 1, lines  # three refusals, one line this minute
    assert "refused POST /hooks/twilio/voice (/hooks/twilio/voice)" in lines[0]
    assert f": 401 {reply.json()['detail']}" in lines[0]

    # A Bitrix24 call with a wrong token: counted under the route pattern, no token in a label
    # or a log line.
    wrong = await phone.bitrix("telephony.externalcall.register", query="", token="not-the-token")
    assert wrong.status == 401
    assert await _metric(phone, "/rest/{user}/{token}/{method}", 401) == 1
    metrics = (await phone._send("GET", "/metrics")).text
    assert "not-the-token" not in metrics and BITRIX_TOKEN not in metrics
    bitrix_lines = [
        r for r in caplog.records if r.name == "leadbot.refused" and "/rest/" in r.getMessage()
    ]
    assert len(bitrix_lines) == 1
    assert f": 401 {wrong.json()['error_description']}" in bitrix_lines[0].getMessage()
