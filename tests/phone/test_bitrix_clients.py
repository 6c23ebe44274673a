"""The Bitrix24 REST drop-in driven by the real Bitrix24 client libraries over HTTP:
fast_bitrix24 (async) and the official b24pysdk (sync, run in a thread), each pointed at the
running service's webhook URL `http://127.0.0.1:PORT/rest/<user>/<token>/`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from b24pysdk import BitrixWebhook
from b24pysdk.api.callers.call_method import _MethodCaller
from fast_bitrix24 import BitrixAsync

from crm.dto import SYSTEM
from tests.phone.conftest import BITRIX_TOKEN, PhoneClient, add_rep


@pytest.fixture(autouse=True)
def _b24pysdk_over_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # b24pysdk always builds https://<domain>/rest; the test server speaks plain HTTP on
    # loopback, so only the scheme of its base URL is changed (the SDK has no setting for it).
    monkeypatch.setattr(
        _MethodCaller,
        "_base_url",
        property(lambda self: f"http://{self._domain}/rest"),
    )
    yield


def fast(phone: PhoneClient, user: int) -> BitrixAsync:
    webhook = f"http://127.0.0.1:{phone.service.port}/rest/{user}/{BITRIX_TOKEN}/"
    # Velocity policy on (fast_bitrix24 1.8.14 fails with it off); a fast bucket for tests.
    return BitrixAsync(webhook, verbose=False, requests_per_second=100.0, ssl=False)


def sdk(phone: PhoneClient, user: int) -> BitrixWebhook:
    return BitrixWebhook(
        domain=f"127.0.0.1:{phone.service.port}", webhook_token=f"{user}/{BITRIX_TOKEN}"
    )


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def fast_get(client: BitrixAsync, method: str, ident: int) -> dict[str, Any]:
    # fast_bitrix24's call() answers a one-record get keyed by its batch command; raw=True
    # sends the request as it is and returns Bitrix24's envelope.
    reply = await client.call(method, {"id": ident}, raw=True)
    record: dict[str, Any] = reply["result"]
    return record


async def _admin(phone: PhoneClient) -> int:
    return await add_rep(phone, "Ada Admin", role="admin", extension="101")


# --- lists: paging, filters, select -----------------------------------------------------------


@pytest.mark.filterwarnings("ignore:You are selecting all fields")
async def test_get_all_pages_through_more_than_50_leads_with_a_filter(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    client = fast(phone, admin)
    batch = {
        f"a{i}": (
            "crm.lead.add",
            {
                "fields": {
                    "TITLE": f"Lead {i}",
                    "NAME": f"Person {i}",
                    "SOURCE_ID": "WEB" if i % 2 else "CALL",
                    "PHONE": [{"VALUE": f"+49301000{i:03d}", "VALUE_TYPE": "WORK"}],
                }
            },
        )
        for i in range(120)
    }
    ids = await in_thread(sdk(phone, admin).call_batches, batch)
    assert len(ids["result"]["result"]) == 120
    web = await client.get_all(
        "crm.lead.list",
        params={"filter": {"SOURCE_ID": "WEB"}, "select": ["ID", "TITLE", "SOURCE_ID", "PHONE"]},
    )
    assert len(web) == 60
    assert {row["SOURCE_ID"] for row in web} == {"WEB"}
    assert all(set(row) == {"ID", "TITLE", "SOURCE_ID", "PHONE"} for row in web)
    assert web[0]["PHONE"][0]["VALUE"].startswith("+49301000")
    everything = await client.get_all("crm.lead.list", params={"select": ["*", "UF_*"]})
    assert len(everything) == 120 and len({row["ID"] for row in everything}) == 120
    assert "PHONE" not in everything[0]  # "*" leaves the multifields out, as Bitrix24 does
    # Operators: > and <= on ID, % on TITLE, @ on ID; UF_ and unknown fields ignored.
    first = min(int(row["ID"]) for row in everything)
    some = await client.get_all(
        "crm.lead.list",
        params={
            "filter": {">ID": first + 9, "<=ID": first + 19, "%TITLE": "Lead 1", "UF_CRM_1": "x"}
        },
    )
    assert sorted(int(r["ID"]) for r in some) == [first + i for i in range(10, 20)]
    picked = await client.get_all(
        "crm.lead.list", params={"filter": {"@ID": [first, first + 5]}, "select": ["ID"]}
    )
    assert sorted(int(r["ID"]) for r in picked) == [first, first + 5]


async def test_the_sdk_pages_by_next_and_total(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    token = sdk(phone, admin)
    for i in range(55):
        await in_thread(
            token.call_method, "crm.contact.add", {"fields": {"NAME": f"C{i}", "LAST_NAME": "X"}}
        )
    page = await in_thread(token.call_method, "crm.contact.list", {"select": ["ID", "NAME"]})
    assert page["total"] == 55 and page["next"] == 50 and len(page["result"]) == 50
    listed = await in_thread(token.call_list, "crm.contact.list", {"select": ["ID", "NAME"]})
    assert len(listed["result"]) == 55
    # call_list_fast pages lazily (start=-1, a >ID filter chained in batches): read it all in
    # the thread, the server runs in this loop.
    fast_listed = await in_thread(
        lambda: list(token.call_list_fast("crm.contact.list", {"select": ["ID"]})["result"])
    )
    assert len({row["ID"] for row in fast_listed}) == 55
    last = await in_thread(token.call_method, "crm.contact.list", {"start": 50})
    assert "next" not in last and last["total"] == 55 and len(last["result"]) == 5


# --- records: add, update, get --------------------------------------------------------------


async def test_lead_contact_deal_add_update_get(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    client = fast(phone, admin)
    lead_id = await client.call(
        "crm.lead.add",
        {
            "fields": {
                "TITLE": "Website enquiry",
                "NAME": "Erika",
                "LAST_NAME": "Muster",
                "PHONE": [{"VALUE": "+49 30 5550101", "VALUE_TYPE": "WORK"}],
                "EMAIL": [{"VALUE": "erika@example.com", "VALUE_TYPE": "WORK"}],
                "SOURCE_ID": "WEB",
                "COMMENTS": "wants a quote",
                "UF_CRM_SOMETHING": "ignored",
            }
        },
    )
    lead = await fast_get(client, "crm.lead.get", lead_id)
    assert lead["TITLE"] == "Website enquiry" and lead["SOURCE_ID"] == "WEB"
    assert lead["STATUS_ID"] == "NEW" and lead["ASSIGNED_BY_ID"] == str(admin)
    assert lead["PHONE"][0]["VALUE"] == "+49305550101"
    assert lead["EMAIL"][0]["VALUE"] == "erika@example.com"
    assert lead["COMMENTS"] == "wants a quote"
    assert await client.call(
        "crm.lead.update",
        {"id": lead_id, "fields": {"TITLE": "Quote request", "STATUS_ID": "IN_PROCESS"}},
    )
    lead = await fast_get(client, "crm.lead.get", lead_id)
    assert (lead["TITLE"], lead["STATUS_ID"]) == ("Quote request", "IN_PROCESS")

    token = sdk(phone, admin)
    contact_id = (
        await in_thread(
            token.call_method,
            "crm.contact.add",
            {
                "fields": {
                    "NAME": "Max",
                    "LAST_NAME": "Mustermann",
                    "PHONE": [{"VALUE": "+4930777"}],
                }
            },
        )
    )["result"]
    await in_thread(
        token.call_method,
        "crm.contact.update",
        {"id": contact_id, "fields": {"EMAIL": [{"VALUE": "max@example.com"}]}},
    )
    contact = (await in_thread(token.call_method, "crm.contact.get", {"id": contact_id}))["result"]
    assert (contact["NAME"], contact["LAST_NAME"]) == ("Max", "Mustermann")
    assert [e["VALUE"] for e in contact["EMAIL"]] == ["max@example.com"]

    deal_id = await client.call(
        "crm.deal.add",
        {"fields": {"TITLE": "Order", "CONTACT_ID": contact_id, "OPPORTUNITY": "1200.50"}},
    )
    await client.call(
        "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "NEGOTIATION", "TITLE": "Big"}}
    )
    deal = await fast_get(client, "crm.deal.get", deal_id)
    assert (deal["TITLE"], deal["STAGE_ID"], deal["CATEGORY_ID"]) == ("Big", "NEGOTIATION", "0")
    assert deal["OPPORTUNITY"] == "1200.50" and deal["CONTACT_ID"] == str(contact_id)
    open_deals = await client.get_all(
        "crm.deal.list", params={"filter": {"CONTACT_ID": contact_id, "CLOSED": "N"}}
    )
    assert [d["ID"] for d in open_deals] == [str(deal_id)]


async def test_lead_add_of_a_known_phone_follows_the_decision_table(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    client = fast(phone, admin)
    fields = {"TITLE": "First", "PHONE": [{"VALUE": "+4930123123"}]}
    first = await client.call("crm.lead.add", {"fields": fields})
    # Bitrix24 would add a second lead; Leadbot attaches to the open lead of that phone.
    again = await client.call(
        "crm.lead.add",
        {"fields": {"TITLE": "Second", "PHONE": [{"VALUE": "030 123123"}], "COMMENTS": "again"}},
    )
    assert again == first
    assert len(await phone.leads()) == 1
    # The exception list: nothing is created, the reason is the answer.
    await phone.service.crm.exceptions.add("+4930999000")
    reply = await phone.bitrix(
        "crm.lead.add", json_body={"fields": {"PHONE": [{"VALUE": "+4930999000"}]}}, user=str(admin)
    )
    assert reply.status == 400 and reply.json()["error"] == ""
    assert "excepted phone" in reply.json()["error_description"]
    assert len(await phone.leads()) == 1


async def test_simple_mode_has_no_leads_to_add(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    await phone.service.crm.settings.update(SYSTEM, crm_mode="simple")
    reply = await phone.bitrix(
        "crm.lead.add", json_body={"fields": {"PHONE": [{"VALUE": "+4930111"}]}}, user=str(admin)
    )
    assert reply.status == 400 and "simple mode" in reply.json()["error_description"]
    assert await phone.leads() == []
    contact = await fast(phone, admin).call(
        "crm.contact.add", {"fields": {"NAME": "S", "PHONE": [{"VALUE": "+4930111"}]}}
    )
    assert isinstance(contact, int)


async def test_rights_are_the_webhook_users(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    anna = await add_rep(phone, "Anna Rep")
    bernd = await add_rep(phone, "Bernd Rep")
    anna_lead = await fast(phone, anna).call("crm.lead.add", {"fields": {"TITLE": "Anna's"}})
    await fast(phone, bernd).call("crm.lead.add", {"fields": {"TITLE": "Bernd's"}})
    seen = await fast(phone, anna).get_all("crm.lead.list")
    assert [r["TITLE"] for r in seen] == ["Anna's"]
    assert len(await fast(phone, admin).get_all("crm.lead.list")) == 2
    reply = await phone.bitrix("crm.lead.get", json_body={"id": anna_lead}, user=str(bernd))
    assert reply.status == 400 and reply.json()["error_description"].endswith("another rep")
    nobody = await phone.bitrix("crm.lead.list", json_body={}, user="999")
    assert nobody.status == 401 and nobody.json()["error"] == "INVALID_CREDENTIALS"


# --- lookups: duplicates, users, lines, statuses ------------------------------------------------


async def test_duplicate_find_by_comm_for_phones_and_emails(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    client = fast(phone, admin)
    lead = await client.call(
        "crm.lead.add", {"fields": {"TITLE": "L", "PHONE": [{"VALUE": "+4930444555"}]}}
    )
    contact = await client.call(
        "crm.contact.add", {"fields": {"NAME": "C", "EMAIL": [{"VALUE": "c@example.com"}]}}
    )
    token = sdk(phone, admin)
    by_phone = await in_thread(
        token.call_method,
        "crm.duplicate.findbycomm",
        {"type": "PHONE", "values": ["030 444555", "+4930000001"]},
    )
    assert by_phone["result"] == {"LEAD": [lead]}
    by_mail = await in_thread(
        token.call_method,
        "crm.duplicate.findbycomm",
        {"type": "EMAIL", "values": ["C@example.com"]},
    )
    assert by_mail["result"] == {"CONTACT": [contact]}
    none = await in_thread(
        token.call_method, "crm.duplicate.findbycomm", {"type": "EMAIL", "values": ["x@y.org"]}
    )
    assert none["result"] == []
    # A rep's webhook gets the records that rep may read: not the admin's lead.
    rita = await add_rep(phone, "Rita Rep", extension="102")
    theirs = await in_thread(
        sdk(phone, rita).call_method,
        "crm.duplicate.findbycomm",
        {"type": "PHONE", "values": ["030 444555"]},
    )
    assert theirs["result"] == []
    # Lists filter by PHONE / EMAIL the same way (normalized), and by their absence.
    by_filter = await client.get_all("crm.lead.list", params={"filter": {"PHONE": "030 444555"}})
    assert [int(r["ID"]) for r in by_filter] == [lead]
    mailed = await client.get_all("crm.contact.list", params={"filter": {"EMAIL": "c@EXAMPLE.com"}})
    assert [int(r["ID"]) for r in mailed] == [contact]
    others = await client.get_all(
        "crm.contact.list", params={"filter": {"!EMAIL": "c@example.com"}}
    )
    assert others == []
    bad = await phone.bitrix(
        "crm.duplicate.findbycomm", json_body={"values": ["1"]}, user=str(admin)
    )
    assert bad.status == 400 and bad.json()["error_description"].startswith("Communication type")


async def test_user_get_maps_extensions_and_profile(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    anna = await add_rep(phone, "Anna Schmidt", extension="202", email="anna@example.com")
    client = fast(phone, admin)
    users = await client.get_all("user.get", params={"FILTER": {"UF_PHONE_INNER": "202"}})
    assert [(u["ID"], u["NAME"], u["LAST_NAME"], u["EMAIL"]) for u in users] == [
        (str(anna), "Anna", "Schmidt", "anna@example.com")
    ]
    everyone = await client.get_all("user.get", params={"FILTER": {"ACTIVE": True}})
    assert {u["UF_PHONE_INNER"] for u in everyone} == {"101", "202"}
    token = sdk(phone, admin)
    profile = (await in_thread(token.call_method, "profile"))["result"]
    assert profile["ID"] == str(admin) and profile["ADMIN"] is True
    scopes = (await in_thread(token.call_method, "scope"))["result"]
    assert "crm" in scopes and "telephony" in scopes
    assert "crm.lead.list" in (await in_thread(token.call_method, "methods"))["result"]


async def test_external_lines_register_at_start_up(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    token = sdk(phone, admin)
    added = await in_thread(
        token.call_method,
        "telephony.externalLine.add",
        {"NUMBER": "+4989111222", "NAME": "Main", "CRM_AUTO_CREATE": "N"},
    )
    assert added["result"]["ID"] >= 1
    twice = await phone.bitrix(
        "telephony.externalLine.add", json_body={"NUMBER": "+4989111222"}, user=str(admin)
    )
    assert twice.status == 400 and twice.json() == {
        "error": "ERROR_CORE",
        "error_description": "Line already exists",
    }
    await in_thread(
        token.call_method,
        "telephony.externalLine.update",
        {"NUMBER": "+4989111222", "NAME": "Hotline"},
    )
    lines = (await in_thread(token.call_method, "telephony.externalLine.get"))["result"]
    assert lines == [{"NUMBER": "+4989111222", "NAME": "Hotline", "CRM_AUTO_CREATE": "N"}]
    # Calls on a line registered with CRM_AUTO_CREATE=N create nothing, even with CRM_CREATE.
    call = {"USER_ID": admin, "PHONE_NUMBER": "+4930555", "TYPE": 2, "CRM_CREATE": 1}
    on_line = await in_thread(
        token.call_method,
        "telephony.externalcall.register",
        {**call, "LINE_NUMBER": "+4989111222"},
    )
    assert on_line["result"]["CRM_CREATED_LEAD"] is None
    elsewhere = await in_thread(
        token.call_method, "telephony.externalcall.register", {**call, "LINE_NUMBER": "+4989000"}
    )
    assert elsewhere["result"]["CRM_CREATED_LEAD"] is not None
    await in_thread(token.call_method, "telephony.externalLine.delete", {"NUMBER": "+4989111222"})
    assert (await in_thread(token.call_method, "telephony.externalLine.get"))["result"] == []


async def test_parameters_in_a_query_string_and_a_form(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    added = await phone._send(
        "POST",
        f"/rest/{admin}/{BITRIX_TOKEN}/crm.lead.add.json",
        data={"fields[TITLE]": "Form lead", "fields[PHONE][0][VALUE]": "+4930700700"},
    )
    assert added.status == 200, added.text
    query = "filter[%25TITLE]=form&filter[>=ID]=1&select[]=ID&select[]=PHONE&order[ID]=DESC"
    listed = await phone.bitrix("crm.lead.list", query=query, user=str(admin))
    assert listed.status == 200, listed.text
    [row] = listed.json()["result"]
    assert row["ID"] == str(added.json()["result"]) and row["PHONE"][0]["VALUE"] == "+4930700700"
    assert listed.json()["total"] == 1 and "next" not in listed.json()


async def test_status_and_stage_ids(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    client = fast(phone, admin)
    statuses = await client.call("crm.status.list", {"filter": {"ENTITY_ID": "STATUS"}}, raw=True)
    assert [s["STATUS_ID"] for s in statuses["result"]][:2] == ["NEW", "IN_PROCESS"]
    stages = await client.call("crm.dealcategory.stage.list", {"id": 0}, raw=True)
    assert stages["result"][0]["STATUS_ID"] == "NEW"


# --- batch, activities, errors ------------------------------------------------------------------


async def test_a_batch_mixing_the_methods_with_result_references(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    token = sdk(phone, admin)
    reply = await in_thread(
        token.call_batch,
        {
            "contact": (
                "crm.contact.add",
                {"fields": {"NAME": "Bea", "PHONE": [{"VALUE": "+4930600"}]}},
            ),
            "deal": (
                "crm.deal.add",
                {"fields": {"TITLE": "Bea's order", "CONTACT_ID": "$result[contact]"}},
            ),
            "get": ("crm.deal.get", {"id": "$result[deal]"}),
            "comment": (
                "crm.timeline.comment.add",
                {"fields": {"ENTITY_TYPE": "deal", "ENTITY_ID": "$result[deal]", "COMMENT": "hi"}},
            ),
            "task": (
                "crm.activity.add",
                {
                    "fields": {
                        "OWNER_TYPE_ID": 2,
                        "OWNER_ID": "$result[deal]",
                        "TYPE_ID": 3,
                        "SUBJECT": "Call back",
                    }
                },
            ),
            "acts": (
                "crm.activity.list",
                {"filter": {"OWNER_TYPE_ID": 2, "OWNER_ID": "$result[deal]"}},
            ),
            "users": ("user.get", {}),
            "dup": ("crm.duplicate.findbycomm", {"type": "PHONE", "values": ["+4930600"]}),
            "missing": ("crm.nothing.here", {}),
        },
    )
    batch = reply["result"]
    results = batch["result"]
    assert results["get"]["CONTACT_ID"] == str(results["contact"])
    assert results["dup"] == {"CONTACT": [results["contact"]]}
    assert {a["SUBJECT"] for a in results["acts"]} == {"Call back"}
    assert batch["result_total"]["acts"] == 1 and batch["result_total"]["users"] == 1
    assert batch["result_error"]["missing"]["error"] == "ERROR_METHOD_NOT_FOUND"


async def test_unknown_methods_and_the_v3_path(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    unknown = await phone.bitrix("crm.nothing.list", json_body={}, user=str(admin))
    assert unknown.status == 404
    assert unknown.json() == {
        "error": "ERROR_METHOD_NOT_FOUND",
        "error_description": "Method not found!",
    }
    for path in ("/rest/", f"/rest/{admin}/{BITRIX_TOKEN}/", f"/rest/{admin}/x/crm/lead/list"):
        other = await phone._send("GET", path)
        assert other.status == 404 and other.json() == unknown.json(), path
    v3 = await phone._send(
        "POST", f"/rest/api/{admin}/{BITRIX_TOKEN}/crm.lead.list", json={"filter": {}}
    )
    assert v3.status == 200 and v3.json()["result"] == []
    v3_unknown = await phone._send(
        "POST", f"/rest/api/{admin}/{BITRIX_TOKEN}/nothing.at.all", json={}
    )
    assert v3_unknown.status == 404
    assert v3_unknown.json()["error"]["code"] == "ERROR_METHOD_NOT_FOUND"


async def test_bad_values_are_bitrix_errors_never_server_errors(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    huge = "9" * 30
    calls: list[tuple[str, dict[str, Any]]] = [
        ("crm.lead.list", {"filter": {"ID": "abc"}}),
        ("crm.lead.list", {"filter": {">ID": huge}}),
        ("crm.lead.list", {"filter": {">=DATE_CREATE": "yesterday"}}),
        ("crm.lead.list", {"filter": {">=DATE_CREATE": "0001-01-01T00:00:00+14:00"}}),
        ("crm.lead.list", {"filter": {"ID": [1, {"x": 1}]}}),
        ("crm.lead.list", {"start": "many"}),
        ("crm.lead.list", {"start": huge}),
        ("crm.deal.list", {"filter": {">OPPORTUNITY": "NaN"}}),
        ("crm.deal.list", {"filter": {"CATEGORY_ID": "x"}}),
        ("crm.lead.get", {"id": huge}),
        ("crm.lead.get", {"id": 12345}),
        ("crm.lead.add", {"fields": "TITLE"}),
        ("crm.lead.add", {"fields": {"TITLE": "x", "ASSIGNED_BY_ID": huge}}),
        ("crm.lead.add", {"fields": {"TITLE": "x", "CONTACT_ID": 777}}),
        ("crm.lead.add", {"fields": {"TITLE": "x", "STATUS_ID": "NO_SUCH"}}),
        ("crm.lead.update", {"id": 99999, "fields": {"TITLE": "y"}}),
        ("crm.lead.add", {"fields": {"TITLE": "x", "ASSIGNED_BY_ID": 4242}}),
        ("crm.lead.add", {"fields": {"TITLE": "x", "STATUS_ID": "CONVERTED"}}),
        ("crm.company.add", {"fields": {"TITLE": "c", "ASSIGNED_BY_ID": 4242}}),
        ("crm.deal.add", {"fields": {"TITLE": "d", "OPPORTUNITY": "1e999"}}),
        ("crm.deal.add", {"fields": {"TITLE": "d", "OPPORTUNITY": "-Infinity"}}),
        ("crm.deal.add", {"fields": {"TITLE": "d", "CATEGORY_ID": 9}}),
        ("crm.deal.add", {"fields": {"TITLE": "d", "STAGE_ID": "NOPE"}}),
        ("crm.activity.add", {"fields": {"OWNER_TYPE_ID": 1, "OWNER_ID": huge}}),
        ("crm.activity.add", {"fields": {"OWNER_TYPE_ID": 9, "OWNER_ID": 1}}),
        ("crm.activity.add", {"fields": {"OWNER_TYPE_ID": 1, "OWNER_ID": 1, "END_TIME": "x"}}),
        ("crm.timeline.comment.add", {"fields": {"ENTITY_TYPE": "lead", "ENTITY_ID": 5}}),
        ("crm.duplicate.findbycomm", {"type": "PHONE", "values": [str(i) for i in range(21)]}),
        ("crm.dealcategory.stage.list", {"id": 7}),
        ("telephony.externalLine.update", {"NUMBER": "+49301"}),
        ("telephony.externalLine.delete", {"NUMBER": "+49301"}),
        ("telephony.externalLine.add", {"NUMBER": "1" * 200}),
        ("telephony.externalLine.add", {"NUMBER": "+49301", "CRM_AUTO_CREATE": "maybe"}),
    ]
    for method, body in calls:
        reply = await phone.bitrix(method, json_body=body, user=str(admin))
        assert reply.status == 400, (method, body, reply.text)
        error = reply.json()
        assert set(error) == {"error", "error_description"} and error["error_description"]
    # Nothing was half-written by a refused add.
    assert await phone.leads() == []


async def test_an_update_refused_in_part_changes_nothing(phone: PhoneClient) -> None:
    admin = await _admin(phone)
    rep = await add_rep(phone, "Rita Rep")
    client = fast(phone, rep)
    lead = await client.call("crm.lead.add", {"fields": {"TITLE": "Mine"}})
    deal = await fast(phone, admin).call("crm.deal.add", {"fields": {"TITLE": "D"}})
    for method, ident, fields, user in (
        # A plain rep may not hand the lead to the admin; the title stays.
        ("crm.lead.update", lead, {"TITLE": "Changed", "ASSIGNED_BY_ID": admin}, rep),
        ("crm.lead.update", lead, {"TITLE": "Changed", "STATUS_ID": "CONVERTED"}, rep),
        ("crm.deal.update", deal, {"TITLE": "Changed", "STAGE_ID": "C5:NEW"}, admin),
        ("crm.deal.update", deal, {"TITLE": "Changed", "STAGE_ID": "NOWHERE"}, admin),
        ("crm.deal.update", deal, {"TITLE": "Changed", "OPPORTUNITY": "lots"}, admin),
    ):
        reply = await phone.bitrix(
            method, json_body={"id": ident, "fields": fields}, user=str(user)
        )
        assert reply.status == 400, (method, fields, reply.text)
    assert (await fast_get(client, "crm.lead.get", lead))["TITLE"] == "Mine"
    assert (await fast_get(fast(phone, admin), "crm.deal.get", deal))["TITLE"] == "D"
    # The admin may reassign; the rep then no longer sees the lead.
    await fast(phone, admin).call(
        "crm.lead.update", {"id": lead, "fields": {"ASSIGNED_BY_ID": admin, "STATUS_ID": "JUNK"}}
    )
    moved = await fast_get(fast(phone, admin), "crm.lead.get", lead)
    assert (moved["ASSIGNED_BY_ID"], moved["STATUS_SEMANTIC_ID"]) == (str(admin), "F")
    assert await client.get_all("crm.lead.list") == []
