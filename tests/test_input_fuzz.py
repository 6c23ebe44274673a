"""No input produces a 5xx: arbitrary requests at every route a real service mounts.

The route list is read from the running service's router, so a new route is fuzzed without
touching this file. Signed routes get valid signatures over the arbitrary bodies (and the
right tokens in their paths), so the fuzzer reaches the parsers behind the checks. Requests
go over real HTTP (http.client, from a thread, while the service runs on the test's loop).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from channels.phone.signatures import sign_generic
from leadbot.api import api_component
from leadbot.wiring import COMPONENTS
from tests.fakes.telegram_api import FakeTelegram

PHONE_SECRET = "fuzz-phone-secret"
TWILIO_TOKEN = "fuzz-twilio-token"
BITRIX_TOKEN = "fuzzbitrix"
LOOKUP_TOKEN = "fuzz-lookup"
PUBLIC = "https://crm.example.com"
WA_SECRET = "fuzz-wa-secret"
TG_SECRET = "fuzz-tg-secret"
FORM_KEY = "contact"

# Every character, lone surrogates, NUL and control characters included.
any_char = st.characters(codec=None, exclude_categories=())
nasty_text = st.text(any_char, max_size=12) | st.sampled_from(
    ["\x00", "\ud800", "a\udfffb", "\x1b[31m", "\u0085", "=HYPERLINK(1)", "%_\\", ""]
)
# Header values HTTP allows (visible ASCII, space, obs-text); a malformed message is refused
# before any route sees it (test_malformed_http_is_a_quiet_400).
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=20,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=12,
)


def dump(value: Any) -> bytes:
    return json.dumps(value).encode()  # lone surrogates travel as \ud800 escapes


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# Near-valid documents per format, so parsing gets past the envelope.
call_docs = st.fixed_dictionaries(
    {
        "event": st.sampled_from(["call.ringing", "call.missed", "call.ended"]),
        "call_id": nasty_text.filter(bool) | st.integers(),
        "direction": st.sampled_from(["incoming", "outgoing"]),
        "from": st.sampled_from(["+4930123456", "030 1234", "anonymous"]) | nasty_text,
    },
    optional={"caller_name": nasty_text, "line": nasty_text, "duration": json_values},
)
updates = st.fixed_dictionaries(
    {"update_id": st.integers(1, 10**6) | json_values},
    optional={
        "message": json_values
        | st.fixed_dictionaries(
            {
                "message_id": st.integers(1, 100),
                "date": st.just(1_700_000_000),
                "chat": st.just({"id": 555, "type": "private"}),
                "from": st.just({"id": 555, "is_bot": False, "first_name": "Fuzz"}),
                "text": nasty_text | st.just("/find %%"),
            }
        ),
        "callback_query": json_values,
    },
)
bitrix_docs = st.fixed_dictionaries(
    {},
    optional={
        "USER_ID": st.sampled_from([1, "1", 0]) | json_values,
        "USER_PHONE_INNER": nasty_text,
        "PHONE_NUMBER": st.sampled_from(["+4930123456", "\ud800"]) | nasty_text,
        "TYPE": st.sampled_from([1, 2, "2"]) | json_values,
        "CALL_ID": nasty_text,
        "CRM_CREATE": st.sampled_from([0, 1]),
        "CRM_SOURCE": nasty_text,
        "LINE_NUMBER": nasty_text,
        "cmd": json_values,
    },
)
form_fields = st.dictionaries(
    st.sampled_from(["name", "email", "phone", "message", "company", "website"]) | nasty_text,
    nasty_text,
    max_size=5,
)
valid_forms = st.fixed_dictionaries(
    {"name": nasty_text, "phone": st.sampled_from(["+49 30 1234567", "030 7654321"])},
    optional={"message": nasty_text, "email": st.just("kunde@example.com"), "x": nasty_text},
)
twilio_params = st.fixed_dictionaries(
    {
        "CallSid": st.sampled_from(["CA1", "CA2"]) | nasty_text,
        "Direction": st.sampled_from(["inbound", "outbound-dial"]) | nasty_text,
        "CallStatus": st.sampled_from(["ringing", "no-answer", "completed"]) | nasty_text,
    },
    optional={"From": nasty_text | st.just("+4930123456"), "CallerName": nasty_text},
)


@dataclass(frozen=True)
class Body:
    data: bytes
    content_type: str | None
    form: dict[str, str] | None = None  # the fields, when it is a form Twilio could sign


def _urlencoded(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs).encode()


def _multipart(parts: list[tuple[str | None, str | None, bytes]], boundary: str | None) -> Body:
    sep = (boundary or "XyZ").encode()
    chunks = []
    for name, filename, value in parts:
        disposition = "form-data"
        if name is not None:
            disposition += f'; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        chunks.append(
            b"--%s\r\nContent-Disposition: %s\r\n\r\n%s\r\n" % (sep, disposition.encode(), value)
        )
    data = b"".join(chunks) + b"--%s--\r\n" % sep
    ctype = "multipart/form-data" + (f"; boundary={boundary}" if boundary else "")
    return Body(data, ctype)


def _safe(text: str) -> str:
    return text.encode("utf-8", "replace").decode("latin-1").replace('"', "").replace("\r", "")


multipart_bodies = st.builds(
    _multipart,
    st.lists(
        st.tuples(
            st.none() | st.text(max_size=8).map(_safe),
            st.none() | st.text(max_size=8).map(_safe),
            st.binary(max_size=30),
        ),
        max_size=3,
    ),
    st.none() | st.just("XyZ"),
)
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "text/plain",
        "application/json; charset=latin-1",
    ]
) | header_text.map(lambda t: t.strip())

bodies = st.one_of(
    st.builds(Body, st.binary(max_size=200), content_types),
    st.builds(Body, json_values.map(dump), content_types),
    st.builds(Body, st.sampled_from([30, 2000, 100_000]).map(nested), st.just("application/json")),
    st.builds(Body, call_docs.map(dump), st.just("application/json")),
    st.builds(Body, updates.map(dump), st.just("application/json")),
    st.builds(Body, bitrix_docs.map(dump), st.just("application/json")),
    st.builds(
        Body,
        st.lists(st.tuples(st.binary(max_size=10), st.binary(max_size=20)), max_size=4).map(
            _urlencoded
        ),
        st.just("application/x-www-form-urlencoded"),
    ),
    form_fields.map(
        lambda f: Body(
            urlencode(f, encoding="utf-8", errors="surrogatepass").encode(),
            "application/x-www-form-urlencoded",
        )
    ),
    twilio_params.map(
        lambda p: Body(
            urlencode(p, errors="surrogatepass").encode(), "application/x-www-form-urlencoded", p
        )
    ),
    multipart_bodies,
    st.builds(Body, form_fields.map(dump), st.just("application/json")),
)


invalid_form = st.builds(
    Body,
    st.lists(st.tuples(st.binary(max_size=10), st.binary(max_size=20)), max_size=4).map(
        _urlencoded
    ),
    st.just("application/x-www-form-urlencoded"),
)
deep_json = st.builds(
    Body, st.sampled_from([30, 2000, 100_000]).map(nested), st.just("application/json")
)


def _json(docs: st.SearchStrategy[Any]) -> st.SearchStrategy[Body]:
    return st.builds(Body, docs.map(dump), st.just("application/json"))


# What each area's parser reads, to be tried there more often than chance would.
# The write API's JSON bodies: its own field names with any JSON value, or a likely one.
api_docs = st.dictionaries(
    st.sampled_from(
        [
            "title",
            "name",
            "phones",
            "emails",
            "telegram",
            "whatsapp",
            "contact_id",
            "company_id",
            "amount",
            "currency",
            "force",
            "attach_to",
            "contacts",
            "contact_ids",
            "owner_id",
            "text",
            "due_at",
            "status",
            "stage",
            "pipeline",
            "reason",
            "rep_id",
            "into",
            "existing_deal_id",
        ]
    ),
    json_values
    | st.text(max_size=30)
    | st.integers()
    | st.lists(st.text(max_size=20), max_size=3)
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["lead", "contact", "deal"]), "id": st.integers()}
    ),
    max_size=6,
)

AREA_BODIES: dict[str, st.SearchStrategy[Body]] = {
    "/api": st.one_of(_json(api_docs), deep_json),
    "/forms": st.one_of(
        invalid_form, multipart_bodies, _json(form_fields), deep_json, _json(valid_forms)
    ),
    "/hooks/calls": st.one_of(_json(call_docs), deep_json),
    "/hooks/telegram": st.one_of(_json(updates), deep_json, _json(json_values)),
    "/rest": st.one_of(_json(bitrix_docs), invalid_form, multipart_bodies, deep_json),
    "/hooks/twilio": st.one_of(invalid_form, bodies),
}


def bodies_for(template: str) -> st.SearchStrategy[Body]:
    for prefix, specific in AREA_BODIES.items():
        if template.startswith(prefix):
            # Two in three from the area's own formats (one_of would flatten the branches
            # and dilute them among the general ones).
            return st.sampled_from([specific, specific, bodies]).flatmap(lambda b: b)
    return bodies


def _path_value(name: str) -> st.SearchStrategy[str]:
    """A value for a route's path variable: one that gets past the routing where the route
    wants a known one (a form key, a token); `junk_paths` try the rest."""
    known = {
        "form_key": st.just(FORM_KEY),
        "user": st.just("1"),
        "token": st.just(BITRIX_TOKEN),
        "method": st.sampled_from(
            [
                "telephony.externalcall.register",
                "telephony.externalCall.finish.json",
                "telephony.externalcall.searchCrmEntities",
                "telephony.externalcall.show",
                "telephony.externalcall.attachRecord",
                "batch",
            ]
        ),
    }
    raw = st.binary(min_size=1, max_size=12).map(lambda b: quote(b, safe=""))
    return known.get(name, st.one_of(st.integers(0, 99).map(str), raw))


_VARIABLE = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@dataclass(frozen=True)
class Route:
    method: str
    template: str  # canonical path with {name} variables


def mounted(app: web.Application) -> list[Route]:
    found = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        template = info.get("formatter") or info.get("path")
        if template:
            found.append(Route(route.method, template))
    return found


def area(template: str) -> str:
    """What serves a route: /hooks/<name>, /api, /rest, /forms, or "other" (health, metrics,
    recordings)."""
    parts = template.split("/")
    if parts[1] == "hooks":
        return "/".join(parts[:3])
    return "/" + parts[1] if parts[1] in ("api", "rest", "forms") else "other"


def by_area(routes: list[Route]) -> list[list[Route]]:
    """Routes grouped by `area`, so that the API's many routes do not take most examples."""
    areas: dict[str, list[Route]] = {}
    for route in routes:
        areas.setdefault(area(route.template), []).append(route)
    return list(areas.values())


def fill(template: str) -> st.SearchStrategy[str]:
    names = _VARIABLE.findall(template)
    if not names:
        return st.just(template)
    return st.tuples(*(_path_value(n) for n in names)).map(
        lambda values: _VARIABLE.sub(lambda m, it=iter(values): next(it), template)  # type: ignore[misc]
    )


queries = st.one_of(
    st.just(""),
    st.lists(st.tuples(st.binary(max_size=8), st.binary(max_size=12)), max_size=3).map(
        lambda pairs: _urlencoded(pairs).decode()
    ),
    st.just("hub.mode=subscribe&hub.verify_token=x&hub.challenge=1"),
    st.just("number=%2B4930123456&limit=%ff&offset=-1"),
)


# A body's Content-Encoding: none, or a coding with the body encoded as it says (True) or
# sent as it is (False: undecodable, or junk claiming a coding the service does not know).
ENCODERS = {
    "gzip": lambda data: zlib.compress(data, wbits=16 + zlib.MAX_WBITS),
    "deflate": zlib.compress,
    "identity": lambda data: data,
}
codings = st.one_of(
    st.just((None, False)),
    st.tuples(st.sampled_from([*ENCODERS, "br", "junk", "gzip, deflate", "GZIP"]), st.booleans()),
)


def encoded(data: bytes, coding: tuple[str | None, bool]) -> bytes:
    name, encode = coding
    if not encode or name is None:
        return data
    for part in (p.strip().lower() for p in name.split(",")):
        data = ENCODERS.get(part, ENCODERS["identity"])(data)
    return data


def twilio_signature(url: str, body: Body, method: str) -> str:
    params: dict[str, str] = {}
    if method == "POST" and body.form is not None:
        params = dict(parse_qsl(body.data.decode("utf-8", "replace")))
    return str(RequestValidator(TWILIO_TOKEN).compute_signature(url, params))


def signed_headers(path_and_query: str, body: Body, method: str, api_token: str) -> dict[str, str]:
    """Every credential any route wants, each valid for this very request."""
    lookup = path_and_query.startswith("/hooks/calls/lookup")
    return {
        "X-Leadbot-Signature": sign_generic(PHONE_SECRET, int(time.time()), body.data),
        "X-Hub-Signature-256": "sha256="
        + hmac.new(WA_SECRET.encode(), body.data, hashlib.sha256).hexdigest(),
        "X-Twilio-Signature": twilio_signature(PUBLIC + path_and_query, body, method),
        "X-Telegram-Bot-Api-Secret-Token": TG_SECRET,
        "Authorization": f"Bearer {LOOKUP_TOKEN if lookup else api_token}",
    }


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    # Requested before start_service: it must outlive the service, which talks to it on stop.
    async with FakeTelegram() as server:
        yield server


def all_sections(tg: FakeTelegram) -> dict[str, Any]:
    return {
        "phone": {
            "webhook_secret": PHONE_SECRET,
            "twilio_auth_token": TWILIO_TOKEN,
            "twilio_public_url": PUBLIC,
            "bitrix_token": BITRIX_TOKEN,
            "lookup_token": LOOKUP_TOKEN,
            "region": "DE",
        },
        "whatsapp": {"verify_token": "fuzz-verify", "app_secret": WA_SECRET},
        "forms": [{"key": FORM_KEY, "rate_limit_per_minute": 0}],
        "telegram": {
            "token": "123456:FUZZ-TOKEN",
            "customer_token": "654321:FUZZ-CUSTOMERS",
            "base_url": tg.base_url,
            "polling_timeout": 1,
            "mode": "webhook",
            "webhook_secret": TG_SECRET,
            "webhook_url": "https://crm.example.com/hooks/telegram",
        },
    }


def _problems(records: list[logging.LogRecord]) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()}"
        for r in records
        if r.levelno >= logging.ERROR or r.exc_info is not None
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_no_input_gets_a_5xx_on_any_route(
    tg: FakeTelegram, start_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    service = await start_service(components=list(COMPONENTS), **all_sections(tg))
    bot = next(c for c in service.components if hasattr(c, "wait_ready"))
    await bot.wait_ready()
    # A write token: the write routes' bodies get past the scope check to their parsers.
    _, api_token = await service.crm.tokens.create("fuzz", scopes=("read", "write"))
    # The sender of the fuzzed Telegram messages is a rep: their text reaches the commands,
    # and the cards of fuzzed leads have someone to go to.
    await service.crm.reps.add("Fuzz", role="admin", telegram_user_id=555)
    routes = mounted(service._runner.app)
    assert {
        "/hooks/calls",
        "/hooks/whatsapp",
        "/hooks/telegram",
        "/hooks/telegram/customers",
        "/forms/{form_key}",
    } <= {r.template for r in routes}
    headers = st.dictionaries(
        st.sampled_from(["Accept", "Origin", "X-Forwarded-For", "X-Extra"]),
        header_text | st.just("text/html"),
    )
    routed = (
        st.sampled_from(by_area(routes))
        .flatmap(st.sampled_from)
        .flatmap(
            lambda r: st.tuples(
                st.just(r.method),
                fill(r.template),
                queries,
                bodies_for(r.template),
                headers,
                # Mostly signed, the parsers being behind the checks (the first value is the one
                # Hypothesis tries most).
                st.sampled_from([True, True, True, False]),
                codings,
            )
        )
    )
    # Any method at a route's own path with junk in its variables, or at a junk path.
    junk = st.tuples(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"]),
        st.sampled_from(routes).map(lambda r: _VARIABLE.sub("%00%ff", r.template))
        | st.binary(max_size=20).map(lambda b: "/" + quote(b)),
        queries,
        bodies,
        headers,
        st.booleans(),
        codings,
    )
    requests = st.one_of(routed, routed, routed, junk)
    seen: list[tuple[int, str]] = []

    def send(
        method: str,
        path: str,
        query: str,
        body: Body,
        extra: dict[str, str],
        sign: bool,
        coding: tuple[str | None, bool],
    ) -> int:
        target = path + (f"?{query}" if query else "")
        headers = dict(extra)
        if body.content_type is not None:
            headers["Content-Type"] = body.content_type
        if sign:  # signatures cover the body the routes read: the decoded one
            headers.update(signed_headers(target, body, method, api_token))
        if coding[0] is not None:
            headers["Content-Encoding"] = coding[0]
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
        try:
            conn.request(
                method,
                target,
                body=encoded(body.data, coding) if method != "GET" else None,
                headers=headers,
            )
            response = conn.getresponse()
            text = response.read()
        finally:
            conn.close()
        assert response.status < 500, (method, target, body, response.status, text[:300])
        return response.status

    @settings(
        max_examples=500,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(requests)
    def fuzz(
        request: tuple[str, str, str, Body, dict[str, str], bool, tuple[str | None, bool]],
    ) -> None:
        status = send(*request)
        seen.append((status, request[1]))

    await asyncio.to_thread(fuzz)
    await asyncio.wait_for(service.queue.join(), timeout=60)
    backlog = await service.queue.backlog()
    assert backlog.items == 0, backlog
    assert _problems(caplog.records) == []
    # The fuzzer got past the checks: some requests were accepted, not only refused.
    accepted = {area(path) for status, path in seen if status < 300}
    assert accepted & {"/hooks/calls", "/hooks/telegram", "/hooks/twilio", "/rest"}, accepted


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_inputs_an_operator_saw_answer_500_now_answer_400_with_a_reason(
    tg: FakeTelegram, start_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    service = await start_service(components=list(COMPONENTS), **all_sections(tg))
    bot = next(c for c in service.components if hasattr(c, "wait_ready"))
    await bot.wait_ready()
    rep = await service.crm.reps.add("Rita", extension="101")
    for comp in service.components:
        if getattr(comp, "ctx", None) is not None:
            await comp.ctx.refresh_directory()
    tg_headers = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"}
    cases = [
        # A raw 8-bit byte is read as Windows-1252 ("Jürgen"): what is refused is the number.
        (
            "/forms/contact",
            b"name=J\xfcrgen&phone=030",
            "application/x-www-form-urlencoded",
            {},
            422,
        ),
        (
            "/forms/contact",
            b"--B\r\nContent-Disposition: form-data\r\n\r\nx\r\n--B--\r\n",
            "multipart/form-data; boundary=B",
            {},
            400,
        ),
        ("/forms/contact", b"--B\r\n\r\nx\r\n--B--\r\n", "multipart/form-data", {}, 400),
        ("/hooks/telegram", nested(100_000), None, tg_headers, 400),
        ("/hooks/telegram", b'{"update_id":"abc","message":5}', None, tg_headers, 400),
    ]
    async with aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{service.port}"
        for path, data, ctype, extra, status in cases:
            headers = {**extra, **({"Content-Type": ctype} if ctype else {})}
            async with http.post(base + path, data=data, headers=headers) as r:
                body = await r.json()
                assert r.status == status, (path, data[:60], body)
                assert body["error"] and body["detail"], body
        # Bitrix24 answers in its own error shape; a lone surrogate is cleaned and stored.
        register = f"{base}/rest/1/{BITRIX_TOKEN}/telephony.externalcall.register"
        doc = b'{"USER_ID": %d, "PHONE_NUMBER": "+4930555\\ud800", "TYPE": 2}' % rep.id
        async with http.post(register, data=doc, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 200, await r.text()
    assert _problems(caplog.records) == []


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_malformed_http_is_a_quiet_400(
    start_service: Any, caplog: pytest.LogCaptureFixture
) -> None:
    service = await start_service(components=[api_component])
    for request in (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Extra: a\x7fb\r\n\r\n",
        b"GET /heal thz HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
        writer.write(request)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
        writer.close()
        assert status_line.split()[1] == b"400", (request, status_line)
    assert _problems(caplog.records) == []
