"""The caller lookup reads a plain `number=…` query from the raw query string (`_query`'s
fast path): over real HTTP, for random query strings, it gives what `request.query` gives."""

from __future__ import annotations

from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from channels.phone.lookup import _query

_PIECES = st.sampled_from(
    [
        "number=",
        "number",
        "numbers=",
        "region=",
        "line=",
        "=",
        "&",
        ";",
        "%2B",
        "%2b",
        "%2C",
        "+",
        "%20",
        "%",
        "0",
        "4930",
        "12345678",
        "9",
        "x",
        "DE",
        "%D9%A3",  # ARABIC-INDIC DIGIT THREE: a digit to str.isdigit, not to the fast path
    ]
)
_QUERIES = st.lists(_PIECES, max_size=12).map("".join) | st.builds(
    lambda prefix, digits: f"number={prefix}{digits}",
    st.sampled_from(["", "+", "%2B", "%2b", "%2B+", "++"]),
    st.text("0123456789", min_size=0, max_size=70),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(queries=st.lists(_QUERIES, min_size=1, max_size=20))
async def test_fast_query_reads_what_request_query_reads(queries: list[str]) -> None:
    async def both(request: web.Request) -> web.Response:
        query = request.query
        reference = [query.get("number", ""), query.get("region", ""), query.get("line", "")]
        return web.json_response({"fast": list(_query(request)), "reference": reference})

    app = web.Application()
    app.router.add_get("/q", both)
    async with TestServer(app) as server, ClientSession() as client:
        for raw in queries:
            url = URL(str(server.make_url("/q")) + "?" + raw, encoded=True)
            async with client.get(url) as reply:
                assert reply.status == 200, raw
                got = await reply.json()
            assert got["fast"] == got["reference"], raw
