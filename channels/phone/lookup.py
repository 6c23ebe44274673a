"""`GET /hooks/calls/lookup?number=…[&region=AT | &line=…]`: who is calling, for a PBX
screen-pop or to route the call to the client's rep. Authenticated with `Authorization: Bearer
<phone.lookup_token>`. A national number is read in `region`, else in the region of `line`
(the line the call came through, as for calls), else in the channel's.

Reply (200): `{"number", "e164", "found", "contact", "company", "lead", "deal", "responsible"}`;
each part is an object or null; `responsible` carries the rep's `extension` and `phone`. An
unknown, withheld or unparsable number is `found: false`, not an error.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

import msgspec
from aiohttp import web

from channels.phone.context import PhoneContext
from channels.phone.webhooks import not_configured
from crm.services.telephony import CallerInfo, RepContact
from httpkit import json_error
from matching.normalize import is_region

_MAX_NUMBER = 64
# The reply's JSON, as web.json_response would send it, encoded by msgspec: json.dumps cost
# several times as much, on the event loop, for every lookup (msgspec writes non-ASCII
# characters as UTF-8, not as \u escapes: the same JSON).
_JSON = {"Content-Type": "application/json; charset=utf-8"}
_encode = msgspec.json.Encoder().encode
# The query a PBX sends, `number=%2B4930…` (or `+4930…`, `4930…`) and nothing else: its one
# value read from the raw query string, where `request.query` would decode it into a
# multidict on every lookup. Anything else takes `request.query` (a property test holds the
# two equal).
_PLAIN_QUERY = re.compile(r"number=(%2[Bb]|\+)?([0-9]{1,64})")
_PREFIX = {None: "", "%2B": "+", "%2b": "+", "+": " "}


def _query(request: web.Request) -> tuple[str, str, str]:
    """The `number`, `region` and `line` query parameters ("" when absent), as
    `request.query.get` gives them."""
    plain = _PLAIN_QUERY.fullmatch(request.rel_url.raw_query_string)
    if plain is not None:
        return _PREFIX[plain[1]] + plain[2], "", ""
    query = request.query
    return query.get("number", ""), query.get("region", ""), query.get("line", "")


def _authorized(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(
        given.strip().encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")
    )


def _named(ident: int | None, name: str | None, key: str = "name") -> dict[str, Any] | None:
    return None if ident is None else {"id": ident, key: name}


def _rep(rep: RepContact | None) -> dict[str, Any] | None:
    if rep is None:
        return None
    return {
        "id": rep.id,
        "name": rep.name,
        "active": rep.active,
        "extension": rep.extension,
        "phone": rep.phone,
    }


def caller_json(number: str, e164: str | None, info: CallerInfo | None) -> dict[str, Any]:
    return {
        "number": number,
        "e164": e164,
        "found": info is not None,
        "contact": _named(info.contact_id, info.contact_name) if info else None,
        "company": _named(info.company_id, info.company_name) if info else None,
        "lead": _named(info.lead_id, info.lead_title, "title") if info else None,
        "deal": _named(info.deal_id, info.deal_title, "title") if info else None,
        "responsible": _rep(info.responsible) if info else None,
    }


async def lookup(ctx: PhoneContext, request: web.Request) -> web.Response:
    token = ctx.settings.lookup_token
    if token is None:
        return not_configured("the caller lookup", "lookup_token")
    if not _authorized(request, token.get_secret_value()):
        return json_error(401, "unauthorized", "send Authorization: Bearer <phone.lookup_token>")
    number, region, line = _query(request)
    if number[:1] == " " and number.strip()[:1].isdigit():
        number = "+" + number.lstrip()  # an unencoded "+" in a query string decodes to " "
    number = number.strip()
    if not number:
        return json_error(400, "bad_request", "the number query parameter is required")
    if len(number) > _MAX_NUMBER:
        return json_error(400, "bad_request", f"number is longer than {_MAX_NUMBER} characters")
    region = region.strip()
    if region and not is_region(region):
        return json_error(400, "bad_request", f"unknown region {region[:8]!r}: use e.g. AT")
    line = line[:_MAX_NUMBER]
    e164 = ctx.normalize(number, region.upper() or ctx.lines.region(line or None))
    info = await ctx.callers.caller(e164) if e164 is not None else None
    return web.Response(body=_encode(caller_json(number, e164, info)), headers=_JSON)
