"""Events written by the version before typed meta (journal, Redis stream, event log, ingest
files) still decode and go through intake: the wire format of `InboundEvent` is unchanged,
and meta keys nobody declares are kept, not fatal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from crm.facade import Crm
from matching.event import Channel, InboundEvent
from matching.payloads import EventMeta

# A missed call as `to_json` wrote it before meta was typed, plus a key no channel writes.
OLD_CALL = """{"channel": "call", "external_id": "CA-9:missed", "occurred_at":
"2026-11-30T10:15:00+00:00", "direction": "incoming", "display_name": "Anna Schulz",
"first_name": null, "last_name": null, "company_name": null, "phones": ["+49 30 1234567"],
"emails": [], "handles": [], "subject": "+49301234567 — missed call", "text": null,
"attachments": [], "source": "CALL", "line": "+4989111222", "phone_region": null,
"raw_ref": null, "register_mode": "default", "hint_phones": [], "meta": {"call_id": "CA-9",
"stage": "missed", "direction": "incoming", "from": "+49 30 1234567", "to": "+4989111222",
"missed": true, "withheld": false, "number_parsed": true, "title": "+49301234567 — missed call",
"references": ["CA-9:ringing"], "queue": [1], "pbx_vendor_field": {"x": [1, 2]}}}"""
# A mail, with the keys threading reads, and an older writer's shape (no hint_phones).
OLD_MAIL = """{"channel": "email", "external_id": "<m1@example.com>", "occurred_at":
"2026-11-30T10:16:00+00:00", "emails": ["anna@example.com"], "subject": "Angebot",
"text": "Hallo", "meta": {"message_id": "<m1@example.com>", "in_reply_to": null,
"references": [], "from": "anna@example.com", "to": ["sales@example.com"], "cc": [],
"body": "Hallo, bitte ein Angebot.", "verdict_reason": null}}"""


@pytest.mark.parametrize("raw", [OLD_CALL, OLD_MAIL])
def test_old_json_decodes_and_encodes_back_to_the_same_document(raw: str) -> None:
    doc = json.loads(raw)
    event = InboundEvent.from_json(doc)
    again = event.to_json()
    assert {k: again[k] for k in doc} == doc
    assert InboundEvent.from_json(json.loads(json.dumps(again))) == event


@pytest.mark.parametrize("meta", [None, [], "text", 3])
def test_meta_that_is_no_object_decodes_as_empty(meta: object) -> None:
    doc = json.loads(OLD_MAIL)
    assert InboundEvent.from_json({**doc, "meta": meta}).meta == {}


async def test_an_old_event_with_an_unknown_key_goes_through_intake(crm: Crm) -> None:
    await crm.reps.add("Rita")
    event = InboundEvent.from_json(json.loads(OLD_CALL))
    assert event.channel is Channel.CALL and event.meta.get("call_id") == "CA-9"
    result = await crm.intake.process(event)
    assert result.outcome == "new_lead"
    lead = await crm.leads.get(result.lead_id or 0)
    assert lead.title == "+49301234567 — missed call"
    acts = await crm.activities.of_record("lead", lead.id)
    [act] = [a for a in acts if a.kind == "call"]  # (a missed call also leaves a call-back task)
    assert act.meta["pbx_vendor_field"] == {"x": [1, 2]} and act.meta["missed"] is True
    assert "queue" not in act.meta


# mypy checks every key where meta is built and read with [...]; `.get("…")` takes any
# string, so the keys read that way are checked here against the declared ones.
_READ = re.compile(r"\b(?:event|e|item\.event|self\.event)\.meta(?:\.get\(|\[)\"([a-z_]+)\"")
_PACKAGES = ("matching", "crm", "channels", "bot", "leadbot")


def test_every_meta_key_the_code_reads_is_declared() -> None:
    root = Path(__file__).resolve().parents[2]
    read = {
        key
        for package in _PACKAGES
        for path in (root / package).rglob("*.py")
        for key in _READ.findall(path.read_text())
    }
    assert {"call_id", "missed", "title", "references"} <= read  # the pattern still sees them
    assert read <= set(EventMeta.__annotations__)
