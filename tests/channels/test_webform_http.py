"""Web forms over real HTTP: form-encoded and JSON posts, CORS, honeypot, rate limit, merging."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from channels.webform.routes import forms_component
from crm.models import Activity, InboundEventLog, Lead
from leadbot.app import Service
from leadbot.settings import ConfigError, Settings
from matching.event import Channel, Handle
from tests.channels.service_helpers import count, processed
from tests.conftest import make_event

ORIGIN = "https://www.example.de"
CONTACT_FORM = {
    "key": "contact",
    "field_map": {"first_name": "vorname", "last_name": "nachname", "phone": "tel"},
    "success_redirect": "https://www.example.de/danke",
    "cors_origins": [ORIGIN],
    "title_template": "{subject} ({form}): {name}",
}


async def forms_service(start_service: Any, *forms: dict[str, Any], **sections: Any) -> Service:
    service: Service = await start_service(
        components=[forms_component], forms=list(forms), **sections
    )
    return service


async def post(
    service: Service, key: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> tuple[aiohttp.ClientResponse, bytes]:
    url = f"http://127.0.0.1:{service.port}/forms/{key}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, headers=headers, allow_redirects=False, **kwargs) as response,
    ):
        return response, await response.read()


async def test_html_form_post_redirects_and_becomes_a_lead_with_utm(start_service: Any) -> None:
    service = await forms_service(start_service, {**CONTACT_FORM, "queue": [2]})
    for name in ("Anna", "Ben"):
        await service.crm.reps.add(name)
    fields = {
        "vorname": "Jürgen",
        "nachname": "Müller",
        "tel": "030 1234567",
        "email": "j.mueller@example.de",
        "subject": "Angebot",
        "message": "Bitte rufen Sie mich an",
        "utm_source": "google",
        "utm_campaign": "spring",
        "newsletter": "yes",
        "submission_id": "page-7f3a9c2e",
    }
    response, _ = await post(service, "contact", data=fields)
    assert response.status == 303
    assert response.headers["Location"] == "https://www.example.de/danke"

    row = await processed(service.crm, "webform", "contact:page-7f3a9c2e")
    assert row.outcome == "new_lead"
    lead = await service.crm.leads.get(row.lead_id or 0)
    assert lead.title == "Angebot (contact): Jürgen Müller"
    assert lead.source == "WEBFORM" and lead.name == "Jürgen Müller"
    assert lead.utm == {"utm_source": "google", "utm_campaign": "spring"}
    assert lead.responsible_id == 2  # the form's queue, not the general one
    assert {c.value for c in lead.comms} == {"+49301234567", "j.mueller@example.de"}
    (act,) = await service.crm.activities.of_record("lead", lead.id)
    assert act.kind == "webform" and act.body == "Bitte rufen Sie mich an"
    assert act.meta["fields"] == {"newsletter": "yes"}

    # The page retries the same submission: nothing new.
    again, _ = await post(service, "contact", data=fields)
    assert again.status == 303
    await post(service, "contact", data={"email": "x@example.de", "submission_id": "m-0000001"})
    await processed(service.crm, "webform", "contact:m-0000001")
    assert await count(service.crm, InboundEventLog) == 2


async def test_fetch_with_json_gets_json_and_cors_headers(start_service: Any) -> None:
    service = await forms_service(start_service, CONTACT_FORM)
    url = f"http://127.0.0.1:{service.port}/forms/contact"
    async with aiohttp.ClientSession() as http:
        preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        async with http.options(url, headers=preflight) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert "POST" in r.headers["Access-Control-Allow-Methods"]
        async with http.options(url, headers={**preflight, "Origin": "https://evil.test"}) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers

    body = {"vorname": "Anna", "email": "anna@example.de", "utm_medium": "cpc"}
    response, raw = await post(service, "contact", json=body, headers={"Origin": ORIGIN})
    assert response.status == 202
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    answer = json.loads(raw)  # JSON even though the form has a redirect
    assert answer["status"] == "received"
    row = await processed(service.crm, "webform", f"contact:{answer['submission_id']}")
    lead = await service.crm.leads.get(row.lead_id or 0)
    assert lead.utm == {"utm_medium": "cpc"}

    # Errors carry CORS headers as well, so the page can show the reason.
    response, raw = await post(
        service, "contact", json={"vorname": "Anna"}, headers={"Origin": ORIGIN}
    )
    assert response.status == 400
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert b"a phone number or an email address is required" in raw
    response, _ = await post(service, "contact", json=body, headers={"Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("kwargs", "status", "reason"),
    [
        (
            {"data": b"{broken", "headers": {"Content-Type": "application/json"}},
            400,
            b"not valid JSON",
        ),
        ({"json": ["a", "list"]}, 400, b"must be an object"),
        ({"data": b"email=a@b.de", "headers": {"Content-Type": "text/plain"}}, 415, b"send "),
        ({"data": {"tel": "12"}}, 422, b"not a phone number we can call"),
        # The right length, but no such number: zeros must not become everybody's phone.
        ({"data": {"tel": "0000000"}}, 422, b"not a phone number we can call"),
        ({"data": {"tel": "+49 000 000000"}}, 422, b"not a phone number we can call"),
        ({"data": {"email": "not-an-address"}}, 422, b"not a valid email address"),
        ({"json": {"email": {"nested": 1}}}, 400, b"must be text"),
    ],
)
async def test_bad_submissions_get_a_clear_error_and_create_nothing(
    start_service: Any, kwargs: dict[str, Any], status: int, reason: bytes
) -> None:
    service = await forms_service(start_service, CONTACT_FORM)
    response, raw = await post(service, "contact", **kwargs)
    assert response.status == status and reason in raw
    assert b'"error": "invalid_submission"' in raw


async def test_unknown_form_is_404(start_service: Any) -> None:
    service = await forms_service(start_service, CONTACT_FORM)
    response, raw = await post(service, "nope", data={"email": "a@b.de"})
    assert response.status == 404 and b"unknown_form" in raw


async def test_honeypot_looks_like_success_but_creates_nothing(start_service: Any) -> None:
    service = await forms_service(start_service, CONTACT_FORM)
    bot = {"email": "bot@spam.test", "website": "http://spam.test", "submission_id": "bot-00001"}
    response, _ = await post(service, "contact", data=bot)
    assert response.status == 303 and response.headers["Location"].endswith("/danke")
    response, raw = await post(service, "contact", json=bot)
    assert response.status == 202 and b'"received"' in raw
    await post(service, "contact", data={"email": "real@example.de", "submission_id": "human-001"})
    await processed(service.crm, "webform", "contact:human-001")
    assert await count(service.crm, InboundEventLog) == 1


async def test_rate_limit_per_client_address(start_service: Any) -> None:
    service = await forms_service(start_service, {"key": "quote", "rate_limit_per_minute": 2})
    statuses = []
    for i in range(3):
        response, _ = await post(service, "quote", data={"email": f"p{i}@example.de"})
        statuses.append(response.status)
    assert statuses == [202, 202, 429]
    assert int(response.headers["Retry-After"]) > 0


@pytest.mark.parametrize(("mode", "leads"), [("merge", 1), ("always_new", 2)])
async def test_duplicate_mode_merges_or_always_adds(
    start_service: Any, mode: str, leads: int
) -> None:
    service = await forms_service(start_service, {"key": "demo", "duplicate_mode": mode})
    first = {"name": "Eva", "email": "eva@example.de", "submission_id": "eva-00001"}
    await post(service, "demo", data=first)
    await processed(service.crm, "webform", "demo:eva-00001")
    second = {"phone": "+49 171 7654321", "email": "EVA@example.de", "submission_id": "eva-00002"}
    await post(service, "demo", data=second)
    row = await processed(service.crm, "webform", "demo:eva-00002")
    assert row.outcome == ("attached_lead" if mode == "merge" else "new_lead")
    assert await count(service.crm, Lead) == leads
    if mode == "merge":  # the new phone went onto the existing lead
        lead = await service.crm.leads.get(row.lead_id or 0)
        assert {c.value for c in lead.comms} == {"eva@example.de", "+491717654321"}


@pytest.mark.parametrize("crm_mode", ["classic", "simple"])
async def test_call_then_telegram_then_form_is_one_person_with_three_activities(
    start_service: Any, crm_mode: str
) -> None:
    """The same person calls, writes on Telegram sharing that phone, then fills in the form
    with the phone and, for the first time, their email: one record carries everything."""
    service = await forms_service(start_service, {"key": "contact"}, crm={"mode": crm_mode})
    call = await service.process_now(
        make_event(phones=("+49 30 1234567",), meta={"call_id": "call-1"})
    )
    telegram = await service.process_now(
        make_event(
            channel=Channel.TELEGRAM,
            phones=("+4930 1234567",),
            handles=(Handle("telegram", "777000", "kunde"),),
            text="Hallo, ich hatte angerufen",
        )
    )
    form = {"name": "Karl Kunde", "phone": "030/1234567", "email": "karl@kunde.de"}
    response, raw = await post(service, "contact", json=form)
    assert response.status == 202
    sid = json.loads(raw)["submission_id"]
    web = await processed(service.crm, "webform", f"contact:{sid}")

    if crm_mode == "classic":
        owner, owner_id = "lead", call.lead_id
        assert {r.lead_id for r in (telegram, web)} == {owner_id}
        assert await count(service.crm, Lead) == 1
    else:
        owner, owner_id = "contact", call.contact_id
        assert {r.contact_id for r in (telegram, web)} == {owner_id}
    acts = await service.crm.activities.of_record(owner, owner_id or 0)
    assert sorted(a.kind for a in acts) == ["call", "message", "webform"]
    # A later form with only the email still finds the same person.
    response, raw = await post(service, "contact", data={"email": "Karl@Kunde.de"})
    sid = json.loads(raw)["submission_id"]
    by_email = await processed(service.crm, "webform", f"contact:{sid}")
    assert getattr(by_email, f"{owner}_id") == owner_id
    assert await count(service.crm, Activity) == 4


def test_form_configuration_errors_are_reported_at_start() -> None:
    class Fake:
        def __init__(self, *forms: dict[str, Any]) -> None:
            self.settings = Settings(forms=list(forms))

    assert forms_component(Fake()) is None  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="used twice"):
        forms_component(Fake({"key": "a"}, {"key": "a"}))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown fields in field_map"):
        forms_component(Fake({"key": "a", "field_map": {"fax": "f"}}))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="title_template"):
        forms_component(Fake({"key": "a", "title_template": "{secret}"}))  # type: ignore[arg-type]


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    start_service: Any,
) -> None:
    form = {"key": "quote", "rate_limit_per_minute": 1}
    service = await forms_service(
        start_service, form, http={"host": "127.0.0.1", "port": 0, "trusted_proxies": ["127.0.0.1"]}
    )

    async def status(forwarded: str, n: int) -> int:
        headers = {"X-Forwarded-For": forwarded}
        response, _ = await post(service, "quote", headers, data={"email": f"x{n}@example.de"})
        return response.status

    # The hop the proxy added is the client; what the client itself claims further left is not.
    assert await status("203.0.113.7", 1) == 202
    assert await status("203.0.113.8", 2) == 202
    assert await status("198.51.100.1, 203.0.113.7", 3) == 429


async def test_forwarded_for_from_an_untrusted_peer_counts_for_nothing(start_service: Any) -> None:
    service = await forms_service(start_service, {"key": "quote", "rate_limit_per_minute": 1})
    one, two = ({"email": f"x{n}@example.de"} for n in (1, 2))
    first, _ = await post(service, "quote", {"X-Forwarded-For": "203.0.113.7"}, data=one)
    second, _ = await post(service, "quote", {"X-Forwarded-For": "203.0.113.8"}, data=two)
    assert (first.status, second.status) == (202, 429)


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        Settings(http={"trusted_proxies": ["10.0.0.0/8", "proxy.local"]})


BROWSER = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Referer": "https://www.example.de/kontakt?a=1&b=<2>",
}


async def test_a_browser_posting_a_plain_form_sees_a_page_never_raw_json(
    start_service: Any,
) -> None:
    """What a website visitor sees after pressing Send on a plain HTML form without a
    redirect configured: a page saying what happened, with the reason and a link back."""
    service = await forms_service(start_service, {"key": "quote", "rate_limit_per_minute": 2})
    ok, page = await post(service, "quote", headers=BROWSER, data={"email": "v@example.de"})
    assert ok.status == 200 and ok.content_type == "text/html"
    assert b"Your message has been received" in page
    assert b'href="https://www.example.de/kontakt?a=1&amp;b=&lt;2&gt;"' in page  # escaped

    bad, page = await post(service, "quote", headers=BROWSER, data={"email": "<b>not-an-address"})
    assert bad.status == 422 and bad.content_type == "text/html"
    assert b"not a valid email address" in page and b"<b>not" not in page
    assert b"Back to the form" in page

    limited, page = await post(service, "quote", headers=BROWSER, data={"email": "w@example.de"})
    assert limited.status == 429 and b"Too many submissions" in page
    unknown, page = await post(service, "nope", headers=BROWSER, data={"email": "v@example.de"})
    assert unknown.status == 404 and b"There is no form with this key" in page

    # The same post from a script (no text/html in Accept) still gets JSON.
    service2 = await forms_service(start_service, {"key": "quote"})
    scripted, raw = await post(service2, "quote", data={"email": "<b>x"})
    assert scripted.status == 422 and json.loads(raw)["error"] == "invalid_submission"


async def test_a_form_from_a_page_in_a_legacy_charset_keeps_its_umlauts(start_service: Any) -> None:
    # A page served as ISO-8859-1 / Windows-1252 posts "Müller" as M%FCller: not UTF-8. Read
    # as UTF-8 with replacement it became "M\ufffdller", in the lead's name and title. UTF-8,
    # as every current browser sends, stays UTF-8 (not two Windows-1252 signs).
    service = await forms_service(start_service, CONTACT_FORM)
    form = "application/x-www-form-urlencoded"
    for sid, body, name in [
        ("legacy-0001", b"vorname=J%FCrgen&nachname=M%FCller&email=j%40ex.de", "Jürgen Müller"),
        ("modern-0001", b"vorname=J%C3%BCrgen&nachname=Z&email=z%40ex.de", "Jürgen Z"),
    ]:
        data = body + b"&submission_id=" + sid.encode()
        response, _ = await post(service, "contact", data=data, headers={"Content-Type": form})
        assert response.status == 303
        row = await processed(service.crm, "webform", f"contact:{sid}")
        assert (await service.crm.leads.get(row.lead_id or 0)).name == name
