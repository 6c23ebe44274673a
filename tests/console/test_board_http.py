"""The board's endpoints over plain HTTP: the live event stream (rights, gaps, heartbeats, no
subscriber left behind), moves and their refusals, column paging, bad filters."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from console import board
from crm.services.leads import LeadInput
from tests.console.conftest import console_url
from tests.console.test_http import _signed_in
from tests.servers import wait_until


async def _next_event(r: aiohttp.ClientResponse, timeout: float = 10) -> dict[str, Any]:
    """The next server-sent event (or comment) as {"event", "data", "id", "comment"}."""
    out: dict[str, Any] = {}
    async with asyncio.timeout(timeout):
        while True:
            raw = await r.content.readline()
            if not raw:
                raise EOFError("the stream ended")
            line = raw.decode().rstrip("\n")
            if not line:
                if out:
                    return out
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "":
                out["comment"] = value
            elif field == "data":
                out["data"] = json.loads(value)
            else:
                out[field] = value


async def _card_event(r: aiohttp.ClientResponse) -> dict[str, Any]:
    while True:
        event = await _next_event(r)
        if event.get("event") == "card":
            return dict(event["data"])


async def test_events_need_a_session_and_a_good_query(console: Any) -> None:
    service = await console()
    rep = await service.crm.reps.add("Rita Rep")
    cookies, _ = await _signed_in(service, rep.id)
    base = console_url(service)
    async with aiohttp.ClientSession() as http, http.get(f"{base}/app/events") as r:
        assert r.status == 401 and (await r.json())["error"] == "unauthenticated"
    async with aiohttp.ClientSession(cookies=cookies) as http:
        async with http.get(f"{base}/app/events?kind=contact") as r:
            assert r.status == 400
            assert (await r.json())["detail"] == "the board shows leads or deals, not 'contact'"
        async with http.get(f"{base}/app/board?from=yesterday") as r:
            assert r.status == 400 and "yesterday&#39; is not a date (YYYY-MM-DD)" in await r.text()
        async with http.get(f"{base}/app/board/column?column=NEW&owner=x1") as r:
            assert r.status == 400 and (await r.json())["detail"] == "owner 'x1' is not a rep"
        async with http.get(f"{base}/app/board?kind=deal&pipeline=nope") as r:
            assert r.status == 400 and "there is no pipeline &#39;nope&#39;" in await r.text()


async def test_a_rep_gets_only_what_they_may_see_and_the_subscriber_ends_on_disconnect(
    console: Any,
) -> None:
    service = await console()
    crm = service.crm
    rita = await crm.reps.add("Rita Rep")
    paul = await crm.reps.add("Paul Other")
    cookies, _ = await _signed_in(service, rita.id)
    feed = crm.changes
    before = feed.subscribers
    async with aiohttp.ClientSession(cookies=cookies) as http:
        r = await http.get(f"{console_url(service)}/app/events?kind=lead")
        assert r.status == 200 and r.content_type == "text/event-stream"
        assert (await _next_event(r))["retry"] == "3000"
        assert feed.subscribers == before + 1
        secret = await crm.leads.create(
            LeadInput("Paul's secret", name="Hidden Name", responsible_id=paul.id)
        )
        gone = await _card_event(r)
        # Only that it is not on Rita's board: nothing of the record itself.
        assert gone == {"kind": "lead", "id": secret.id, "gone": True}
        walk_in = await crm.leads.create(LeadInput("Walk-in <b>", source="CALL"))
        shown = await _card_event(r)
        assert shown["id"] == walk_in.id and shown["column"] == "NEW"
        assert "Walk-in &lt;b&gt;" in shown["html"] and "unassigned" in shown["html"]
        await crm.leads.take(walk_in.id, crm_actor(rita))
        taken = await _card_event(r)
        assert taken["id"] == walk_in.id and "Rita Rep" in taken["html"]
        r.close()  # the browser goes away

    async def closed() -> bool:
        return bool(feed.subscribers == before)

    await wait_until(closed, timeout=10, what="the stream's subscription closed")


def crm_actor(rep: Any) -> Any:
    from crm.dto import Actor

    return Actor(rep_id=rep.id, role=rep.role)


async def test_a_reconnect_gets_a_gap_and_a_quiet_stream_a_heartbeat(
    console: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(board, "HEARTBEAT_SECONDS", 0.3)
    monkeypatch.setattr(board, "TICK_SECONDS", 0.1)
    service = await console()
    rep = await service.crm.reps.add("Sam Supervisor", role="supervisor")
    cookies, _ = await _signed_in(service, rep.id)
    url = f"{console_url(service)}/app/events?kind=lead&owner=none"
    async with (
        aiohttp.ClientSession(cookies=cookies) as http,
        http.get(url, headers={"Last-Event-ID": "old-17"}) as r,
    ):
        await _next_event(r)  # retry
        gap = await _next_event(r)
        assert gap["event"] == "gap" and gap["data"] == {"reason": "reconnected"}
        assert (await _next_event(r))["comment"] == "keep-alive"
        # Filters apply: an assigned lead is not on an unassigned-only board.
        lead = await service.crm.leads.create(LeadInput("Assigned", responsible_id=rep.id))
        assert await _card_event(r) == {"kind": "lead", "id": lead.id, "gone": True}
        # The feed lost changes (Redis was away, the stream fell behind): the board refetches.
        service.crm.changes.lost()
        while (event := await _next_event(r)).get("event") != "gap":
            assert "comment" in event
        assert event["data"] == {"reason": "missed"}
        # The session ends: at its next heartbeat the stream says so and stops.
        await service.crm.web_sessions.end(cookies["leadbot_session"])
        while (event := await _next_event(r)).get("event") != "signedout":
            assert "comment" in event
        with pytest.raises(EOFError):
            await _next_event(r)


async def test_moves_through_json_need_csrf_and_say_why_they_are_refused(console: Any) -> None:
    service = await console()
    crm = service.crm
    rita = await crm.reps.add("Rita Rep")
    paul = await crm.reps.add("Paul Other")
    mine = await crm.leads.create(LeadInput("Mine", responsible_id=rita.id))
    theirs = await crm.leads.create(LeadInput("Theirs", responsible_id=paul.id))
    cookies, csrf = await _signed_in(service, rita.id)
    url = f"{console_url(service)}/app/board/move"
    async with aiohttp.ClientSession(cookies=cookies) as http:
        async with http.post(url, json={"kind": "lead", "id": mine.id, "to": "PROCESSED"}) as r:
            assert r.status == 403  # no CSRF token
        headers = {"X-CSRF-Token": csrf}
        cases = [
            ({"kind": "lead", "id": theirs.id, "to": "PROCESSED"}, 403, "belongs to another rep"),
            ({"kind": "lead", "id": mine.id, "to": "NOPE"}, 422, "the board has no column"),
            ({"kind": "lead", "id": mine.id, "to": "JUNK"}, 422, "say why lead"),
            ({"kind": "lead", "to": "JUNK"}, 400, "say which card to move (id)"),
            ({"kind": "contact", "id": mine.id, "to": "NEW"}, 422, "leads or deals"),
            (
                {"kind": "lead", "id": mine.id, "to": "CONVERTED"},
                422,
                "a lead cannot be dragged to 'Converted': convert it",
            ),
        ]
        for body, status, reason in cases:
            async with http.post(url, json=body, headers=headers) as r:
                assert r.status == status, body
                assert reason in (await r.json())["detail"]
        async with http.post(url, data=b"[1", headers=headers) as r:
            assert r.status == 400
        body = {"kind": "lead", "id": mine.id, "to": "JUNK", "reason": "Spam"}
        async with http.post(url, json=body, headers=headers) as r:
            assert r.status == 200
            moved = await r.json()
            assert moved["column"] == "JUNK" and "Mine" in moved["html"]
        convert = {"kind": "lead", "id": theirs.id, "to": "CONVERTED", "convert": True}
        async with http.post(url, json=convert, headers=headers) as r:
            assert r.status == 403  # still Paul's
    assert (await crm.leads.get(mine.id)).status == "JUNK"
    sam = await crm.reps.add("Sam Supervisor", role="supervisor")
    cookies, csrf = await _signed_in(service, sam.id)
    async with aiohttp.ClientSession(cookies=cookies) as http:
        body = {"kind": "lead", "id": theirs.id, "to": "CONVERTED", "convert": True, "amount": "99"}
        async with http.post(url, json=body, headers={"X-CSRF-Token": csrf}) as r:
            assert r.status == 200 and (await r.json())["column"] == "CONVERTED"
    result = await crm.board.card("lead", theirs.id, crm_actor(sam))
    assert result.column == "CONVERTED"


async def test_a_column_pages_on_with_its_cursor_and_moves_work_without_javascript(
    console: Any,
) -> None:
    service = await console()
    crm = service.crm
    sam = await crm.reps.add("Sam Supervisor", role="supervisor")
    for i in range(board.PER_COLUMN + 3):
        await crm.leads.create(LeadInput(f"Lead number {i:02d}", source="CALL"))
    cookies, csrf = await _signed_in(service, sam.id)
    base = console_url(service)
    jar = aiohttp.CookieJar(unsafe=True)  # keeps the flash cookie of 127.0.0.1
    async with aiohttp.ClientSession(cookies=cookies, cookie_jar=jar) as http:
        async with http.get(f"{base}/app/board?source=CALL") as r:
            page = await r.text()
        assert page.count('class="bcard"') == board.PER_COLUMN
        assert "Lead number 22" in page and "Lead number 02" not in page
        cursor = page.split('data-next="', 1)[1].split('"', 1)[0]
        column = f"{base}/app/board/column?source=CALL&column=NEW&after={cursor}"
        async with http.get(column, headers={"Accept": "application/json"}) as r:
            more = await r.json()
        assert more["next"] is None
        assert [f"Lead number {i:02d}" in more["html"] for i in (2, 1, 0)] == [True] * 3
        # The card's own form, as a browser without JavaScript posts it.
        form = {"_csrf": csrf, "kind": "lead", "id": "1", "to": "IN_PROCESS"}
        referer = {"Referer": f"{base}/app/board?source=CALL"}
        async with http.post(
            f"{base}/app/board/move-form", data=form, headers=referer, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/app/board?source=CALL"
        async with http.get(f"{base}/app/board?source=CALL") as r:
            assert "#1 Lead number 00 moved." in await r.text()
    assert (await crm.leads.get(1)).status == "IN_PROCESS"


async def test_open_streams_do_not_hold_the_shutdown(console: Any) -> None:
    service = await console()
    rep = await service.crm.reps.add("Sam Supervisor", role="supervisor")
    cookies, _ = await _signed_in(service, rep.id)
    async with (
        aiohttp.ClientSession(cookies=cookies) as http,
        http.get(f"{console_url(service)}/app/events") as r,
    ):
        await _next_event(r)  # the stream is open
        started = asyncio.get_running_loop().time()
        await service.stop()  # the HTTP grace period is 10 s
        assert asyncio.get_running_loop().time() - started < 5
        with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
            await _next_event(r)
