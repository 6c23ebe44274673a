"""The generic JSON webhook and the Twilio endpoints over real HTTP: authentication, bad
input, the TwiML answer and idempotent delivery."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from urllib.parse import urlencode
from xml.etree import ElementTree

import pytest
from twilio.request_validator import RequestValidator

from channels.phone.context import RecentBodies, RecentIds
from channels.phone.signatures import sign_generic
from tests.phone.conftest import (
    FALLBACK,
    PUBLIC,
    SECRET,
    TWILIO_TOKEN,
    PhoneClient,
    StartPhone,
    add_rep,
)

CALL = {
    "event": "call.ringing",
    "call_id": "g-1",
    "direction": "incoming",
    "from": "+4930123456",
    "to": "+4989111222",
}
BODY = json.dumps(CALL).encode()
CALLER = "+4930123456"


def _twilio_form(sid: str = "CA" + "1" * 32, **fields: str) -> dict[str, str]:
    form = {
        "CallSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": CALLER,
        "To": "+4989111222",
        "Caller": CALLER,
        "Called": "+4989111222",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    form.update(fields)
    return form


# --- generic ----------------------------------------------------------------------------------


async def test_signed_event_is_accepted_and_replays_are_not_queued_twice(
    phone: PhoneClient,
) -> None:
    first = await phone.post_generic(BODY)
    assert first.status == 202, first.text
    assert first.json() == {"status": "accepted", "event": "g-1:ringing"}
    again = await phone.post_generic(BODY)  # a retry inside the replay window
    assert again.status == 200 and again.json()["status"] == "duplicate"
    await phone.settle()
    assert len(await phone.leads()) == 1


async def test_replayed_body_is_a_duplicate_only_while_its_event_is_recent(
    phone: PhoneClient,
) -> None:
    now = int(time.time())
    first = await phone.post_generic(BODY, timestamp=now)
    assert first.status == 202, first.text
    # The very same signed body (answered without parsing it) and a re-signed copy.
    for stamp in (now, now - 1):
        again = await phone.post_generic(BODY, timestamp=stamp)
        assert again.status == 200 and again.json() == {
            "status": "duplicate",
            "event": "g-1:ringing",
        }
    # Once the event is no longer recent, a replay is queued again (intake keeps it once).
    ctx = phone.service.components[0].ctx
    ctx.recent = RecentIds(ttl=0)
    late = await phone.post_generic(BODY, timestamp=now)
    assert late.status == 202, late.text
    await phone.settle()
    assert len(await phone.leads()) == 1
    events, _ = await phone.service.crm.events.page(limit=10)
    assert [e.outcome for e in events] == ["new_lead"]


async def test_replay_of_a_body_no_longer_remembered_is_still_a_duplicate(
    phone: PhoneClient,
) -> None:
    phone.service.components[0].ctx.bodies = RecentBodies(max_size=1)
    now = int(time.time())
    second = json.dumps({**CALL, "call_id": "g-2"}).encode()
    for body in (BODY, second):
        assert (await phone.post_generic(body, timestamp=now)).status == 202
    # BODY's digest made way for the second one's: the event id still says it is a replay.
    again = await phone.post_generic(BODY, timestamp=now)
    assert again.status == 200 and again.json()["status"] == "duplicate"


def test_remembered_bodies_are_bounded_oldest_first() -> None:
    bodies = RecentBodies(max_size=2)
    for digest in ("a", "b", "a", "c"):  # "a" again is no new entry
        bodies.add(digest, f"id-{digest}", b"{}")
    assert [bodies.get(d) is not None for d in "abc"] == [False, True, True]


async def test_a_new_reps_extension_is_internal_at_once(phone: PhoneClient) -> None:
    # Longer than the always-internal short numbers: only the rep directory knows it.
    before = await phone.call_event("x-1", "call.ringing", "12345")
    assert before.status == 202, before.text
    await add_rep(phone, "Ben", extension="12345")
    after = await phone.call_event("x-2", "call.ringing", "12345")
    assert after.status == 200 and after.json()["status"] == "ignored"


async def test_generic_signature_is_required_and_checked(phone: PhoneClient) -> None:
    async def post(headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        reply = await phone._send("POST", "/hooks/calls", data=BODY, headers=headers)
        return reply.status, reply.json()

    status, body = await post({})
    assert status == 401 and body["error"] == "bad_signature"
    assert "missing X-Leadbot-Signature" in body["detail"]
    status, body = await post({"X-Leadbot-Signature": "t=1,v1=zz"})
    assert status == 401 and "malformed" in body["detail"]
    wrong = await phone.post_generic(BODY, secret="not-the-secret")
    assert wrong.status == 401 and wrong.json()["detail"] == "signature mismatch"
    stale = await phone.post_generic(BODY, timestamp=int(time.time()) - 301)
    assert stale.status == 401 and "window" in stale.json()["detail"]
    future = await phone.post_generic(BODY, timestamp=int(time.time()) + 301)
    assert future.status == 401
    # The signature covers the exact bytes: a changed body does not verify.
    header = sign_generic(SECRET, int(time.time()), BODY)
    tampered = BODY.replace(b"+4930123456", b"+4930999999")
    reply = await phone._send(
        "POST", "/hooks/calls", data=tampered, headers={"X-Leadbot-Signature": header}
    )
    assert reply.status == 401 and reply.json()["detail"] == "signature mismatch"
    await phone.settle()
    assert await phone.leads() == []


async def test_generic_bad_input_gets_400_and_unknown_events_422(phone: PhoneClient) -> None:
    assert (await phone.post_generic(b"{not json")).status == 400
    assert (await phone.post_generic(b"[1, 2]")).status == 400
    missing = await phone.post_generic(json.dumps({**CALL, "call_id": None}).encode())
    assert missing.status == 400 and "call_id" in missing.json()["detail"]
    unknown = await phone.post_generic(json.dumps({**CALL, "event": "call.parked"}).encode())
    assert unknown.status == 422 and unknown.json()["error"] == "unknown_event"
    big = await phone.post_generic(b" " * (65 * 1024))
    assert big.status == 413


def _raw_call(call_id: str, *, chunked: bool = False, pad: int = 0) -> tuple[bytes, bytes]:
    """The head and body of a signed POST /hooks/calls as they go on the wire."""
    body = json.dumps({**CALL, "call_id": call_id, "pad": " " * pad}).encode()
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = (
        "POST /hooks/calls HTTP/1.1\r\nHost: leadbot\r\nContent-Type: application/json\r\n"
        f"X-Leadbot-Signature: {sign_generic(SECRET, int(time.time()), body)}\r\n{length}\r\n\r\n"
    ).encode()
    return head, (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked else body)


async def _answers(reader: asyncio.StreamReader, count: int) -> list[tuple[int, dict[str, str]]]:
    answers = []
    for _ in range(count):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        answers.append((int(head.split()[1]), json.loads(await reader.readexactly(length))))
    return answers


async def test_webhook_bodies_are_read_whole_however_they_arrive(phone: PhoneClient) -> None:
    """The body is taken from the stream as it is when it came with the head: requests
    pipelined on one connection each get their own body; one whose body comes later, in
    pieces, or chunked, is read whole; a chunked body past the limit is a 413."""
    reader, writer = await asyncio.open_connection("127.0.0.1", phone.service.port)
    try:
        writer.write(b"".join(b"".join(_raw_call(f"pipe-{i}")) for i in range(3)))
        answers = await _answers(reader, 3)
        assert answers == [
            (202, {"status": "accepted", "event": f"pipe-{i}:ringing"}) for i in range(3)
        ]
        for chunked in (False, True):
            head, body = _raw_call(f"late-{chunked}", chunked=chunked)
            writer.write(head)
            await writer.drain()
            await asyncio.sleep(0.05)
            for piece in (body[:7], body[7:]):
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(0.05)
            [(status, answer)] = await _answers(reader, 1)
            assert (status, answer["event"]) == (202, f"late-{chunked}:ringing")
        writer.write(b"".join(_raw_call("big", chunked=True, pad=65 * 1024)))
        [(status, answer)] = await _answers(reader, 1)
        assert status == 413 and answer["error"] == "too_large"
    finally:
        writer.close()
    await phone.settle()
    calls = await phone.activities("call")
    assert sorted(str((c.meta or {}).get("call_id")) for c in calls) == sorted(
        [*(f"pipe-{i}" for i in range(3)), "late-False", "late-True"]
    )


async def test_endpoint_without_its_secret_says_so(start_phone: StartPhone) -> None:
    phone = await start_phone(webhook_secret=None, twilio_auth_token=None)
    reply = await phone.post_generic(BODY)
    assert reply.status == 404 and "phone.webhook_secret" in reply.json()["detail"]
    twilio = await phone.twilio("/hooks/twilio/voice", _twilio_form())
    assert twilio.status == 404 and "phone.twilio_auth_token" in twilio.json()["detail"]


# --- Twilio -----------------------------------------------------------------------------------


async def test_twilio_voice_known_caller_is_put_through_to_the_responsible(
    phone: PhoneClient,
) -> None:
    rep = await add_rep(phone, "Anna", phone="+4917600000001")
    first = await phone.twilio("/hooks/twilio/voice", _twilio_form("CA" + "a" * 32))
    assert first.status == 200 and first.content_type == "text/xml"
    # Nobody knows the caller yet: the fallback number takes it.
    root = ElementTree.fromstring(first.text)
    assert root.findtext("Dial/Number") == FALLBACK
    dial = root.find("Dial")
    assert dial is not None and dial.get("action") == f"{PUBLIC}/hooks/twilio/status"
    await phone.settle()
    [lead] = await phone.leads()
    assert lead.responsible_id == rep
    second = await phone.twilio("/hooks/twilio/voice", _twilio_form("CA" + "b" * 32))
    assert ElementTree.fromstring(second.text).findtext("Dial/Number") == "+4917600000001"


async def test_twilio_voice_without_anybody_to_dial_rejects(start_phone: StartPhone) -> None:
    phone = await start_phone(twilio_fallback_number=None)
    reply = await phone.twilio("/hooks/twilio/voice", _twilio_form())
    assert [child.tag for child in ElementTree.fromstring(reply.text)] == ["Reject"]


async def test_twilio_signature_over_the_public_url(start_phone: StartPhone) -> None:
    phone = await start_phone()
    form = _twilio_form()
    # Signed for the bind address instead of the public URL Twilio uses: refused.
    local = await phone.twilio("/hooks/twilio/voice", form, public=phone.base)
    assert local.status == 401 and local.json()["error"] == "bad_signature"
    wrong = await phone.twilio("/hooks/twilio/voice", form, token="other-token")
    assert wrong.status == 401
    missing = await phone._send("POST", "/hooks/twilio/voice", data=form)
    assert missing.status == 401 and "X-Twilio-Signature" in missing.json()["detail"]
    # Behind a proxy that adds a path prefix, the configured public URL is what counts.
    proxied = await start_phone(twilio_public_url="https://pbx.example.org:8443/leadbot/")
    ok = await proxied.twilio(
        "/hooks/twilio/voice", form, public="https://pbx.example.org:8443/leadbot"
    )
    assert ok.status == 200, ok.text


async def test_same_twilio_status_callback_three_times_is_one_activity(
    phone: PhoneClient,
) -> None:
    sid = "CA" + "c" * 32
    await phone.twilio("/hooks/twilio/voice", _twilio_form(sid))
    done = _twilio_form(sid, CallStatus="completed", CallDuration="42")
    for _ in range(3):
        reply = await phone.twilio("/hooks/twilio/status", done)
        assert reply.status == 200 and ElementTree.fromstring(reply.text).tag == "Response"
    await phone.settle()
    [call] = await phone.activities("call")
    assert call.meta is not None and call.meta["duration"] == 42
    assert call.meta["disposition"] == "answered"


async def test_twilio_dial_outcome_decides_a_missed_call(phone: PhoneClient) -> None:
    sid = "CA" + "d" * 32
    await phone.twilio("/hooks/twilio/voice", _twilio_form(sid))
    # The rep did not pick up (the <Dial action> callback) …
    no_answer = _twilio_form(sid, CallStatus="in-progress", DialCallStatus="no-answer")
    assert (await phone.twilio("/hooks/twilio/status", no_answer)).status == 200
    # … then Twilio reports the caller's leg "completed": that is not an answered call.
    completed = _twilio_form(sid, CallStatus="completed", CallDuration="31")
    assert (await phone.twilio("/hooks/twilio/status", completed)).status == 200
    await phone.settle()
    [task] = await phone.activities("task")
    assert not task.done and task.attempts == 1
    [call] = await phone.activities("call")
    assert call.meta is not None and call.meta["missed"] is True


async def test_twilio_bad_input(phone: PhoneClient) -> None:
    unknown = await phone.twilio("/hooks/twilio/status", _twilio_form(CallStatus="parked"))
    assert unknown.status == 422
    no_sid = {k: v for k, v in _twilio_form().items() if k != "CallSid"}
    assert (await phone.twilio("/hooks/twilio/status", no_sid)).status == 400
    raw = await phone._send(
        "POST",
        "/hooks/twilio/status",
        data=b"CallSid=%ff%fe",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"},
    )
    assert raw.status in (400, 401)


async def test_twilio_voice_by_get_signs_the_query(phone: PhoneClient) -> None:
    # A number configured for HTTP GET: the parameters are the query, signed as part of the URL.
    form = _twilio_form("CA" + "e" * 32)
    query = urlencode(form)
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(
        f"{PUBLIC}/hooks/twilio/voice?{query}", {}
    )
    reply = await phone._send(
        "GET", f"/hooks/twilio/voice?{query}", headers={"X-Twilio-Signature": signature}
    )
    assert reply.status == 200 and "<Dial" in reply.text
    unsigned = await phone._send(
        "GET", f"/hooks/twilio/voice?{query}&extra=1", headers={"X-Twilio-Signature": signature}
    )
    assert unsigned.status == 401
    await phone.settle()
    assert len(await phone.leads()) == 1


async def _in_pieces(body: bytes) -> AsyncIterator[bytes]:
    """A body sent chunked, without a Content-Length, in pieces."""
    for start in range(0, len(body), 16 * 1024):
        yield body[start : start + 16 * 1024]
        await asyncio.sleep(0)


# The three formats' bodies, their limits and how each says "too large" in its own words.
_BOUNDED = [
    ("/hooks/calls", 64 * 1024, "application/json", 413, "too_large", "detail"),
    ("/hooks/twilio/status", 64 * 1024, "application/x-www-form-urlencoded", 413, "too_large",
     "detail"),
    ("/rest/1/b24secret/telephony.externalcall.register", 1024 * 1024,
     "application/x-www-form-urlencoded", 400, "INVALID_REQUEST", "error_description"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "limit", "media", "status", "error", "words"), _BOUNDED)
async def test_the_three_formats_bound_their_bodies_alike(
    phone: PhoneClient, path: str, limit: int, media: str, status: int, error: str, words: str
) -> None:
    """One reader (httpkit.read_body) for all three: a body of the limit is read, one byte more
    is refused, whether the Content-Length tells it, the body came whole or it came chunked."""
    for size, refused in ((limit, False), (limit + 1, True)):
        body = b"a=" + b"1" * (size - 2)
        for data in (body, _in_pieces(body)):
            reply = await phone._send("POST", path, data=data, headers={"Content-Type": media})
            said = reply.json() if reply.content_type == "application/json" else {}
            too_large = (reply.status, said.get("error")) == (status, error)
            assert too_large == refused, (size, reply.status, reply.text[:200])
            if refused:
                assert said[words].endswith(f"body larger than {limit} bytes")
