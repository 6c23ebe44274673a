"""Bad query and path values get 400 with a reason; unknown records 404; all as JSON."""

from __future__ import annotations

from datetime import timedelta, timezone

from crm.services.leads import LeadInput
from tests.api.conftest import ApiClient

BAD = [
    ("/api/v1/leads/abc", None, "id must be an integer"),
    ("/api/v1/leads/0", None, "id must be between 1"),
    ("/api/v1/leads/99999999999", None, "id must be between 1"),
    ("/api/v1/deals/1.5/activities", None, "id must be an integer"),
    ("/api/v1/leads", {"limit": "0"}, "limit must be between 1 and 200"),
    ("/api/v1/leads", {"limit": "201"}, "limit must be between 1 and 200"),
    ("/api/v1/contacts", {"limit": "ten"}, "limit must be an integer"),
    ("/api/v1/events", {"offset": "-1"}, "offset must be between 0"),
    ("/api/v1/leads", {"unassigned": "maybe"}, "unassigned must be true or false"),
    ("/api/v1/deals", {"is_repeated_approach": "Y"}, "true or false"),
    ("/api/v1/leads", {"created_from": "2024-05-01T10:00:00"}, "needs a timezone"),
    ("/api/v1/deals", {"created_to": "yesterday"}, "ISO-8601"),
    ("/api/v1/leads", {"created_from": "2024-05-01T10:00:00 02:00"}, "%2B"),
    ("/api/v1/leads", {"semantic": "open"}, "semantic must be one of process"),
    ("/api/v1/events", {"channel": "fax"}, "channel must be one of"),
    ("/api/v1/leads", {"status": ""}, "status must not be empty"),
    ("/api/v1/leads", {"source": "A\x00B"}, "control characters"),
    ("/api/v1/leads", {"stauts": "NEW"}, "unknown query parameter 'stauts'"),
    ("/api/v1/contacts", {"status": "NEW"}, "unknown query parameter 'status'"),
    ("/api/v1/leads", [("limit", "1"), ("limit", "2")], "limit may be given only once"),
    ("/api/v1/duplicates", [("phone", "1")] * 21, "at most 20"),
    ("/api/v1/duplicates", {"email": "x" * 201}, "longer than 200"),
]


async def test_bad_values_are_400_with_a_reason(api: ApiClient) -> None:
    # One service for all cases keeps this fast; the case is in every failure message.
    for path, params, detail in BAD:
        reply = await api.get(path, params)
        assert reply.status == 400, (path, params, reply.body)
        assert reply.body["error"] == "bad_request", (path, params)
        assert detail in reply.body["detail"], (path, params, reply.body)


async def test_timezone_offsets_are_honoured(api: ApiClient) -> None:
    lead = await api.service.crm.leads.create(LeadInput(title="Timed"))
    # Half an hour before creation, written in UTC+2 and UTC-2: an API that dropped the
    # offset would be off by two hours and answer the other way round.
    before = (lead.created_at - timedelta(minutes=30)).astimezone(timezone(timedelta(hours=2)))
    after = (lead.created_at + timedelta(minutes=30)).astimezone(timezone(timedelta(hours=-2)))
    assert await api.ids("/api/v1/leads", {"created_from": before.isoformat()}) == [lead.id]
    assert await api.ids("/api/v1/leads", {"created_from": after.isoformat()}) == []
    assert await api.ids("/api/v1/leads", {"created_to": after.isoformat()}) == [lead.id]
    # The earliest and the latest date-time there is, east and west of UTC: as far as time
    # goes (a valid RFC 3339 date-time is never refused).
    assert await api.ids("/api/v1/leads", {"created_to": "0001-01-01T00:00:00+05:00"}) == []
    assert await api.ids("/api/v1/leads", {"created_from": "0001-01-01T00:00:00+05:00"}) == [
        lead.id
    ]
    assert await api.ids("/api/v1/leads", {"created_to": "9999-12-31T23:59:59-05:00"}) == [lead.id]


async def test_other_methods_and_paths_are_json_errors(api: ApiClient) -> None:
    async with api.http.delete(
        api.base + "/api/v1/leads", headers={"Authorization": f"Bearer {api.token}"}
    ) as r:
        assert r.status == 405 and (await r.json())["error"] == "method_not_allowed"
    missing = await api.get("/api/v1/nothing-here")
    assert missing.status == 404 and missing.body["error"] == "not_found"
