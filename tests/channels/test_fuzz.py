"""Property tests: hostile input only ever produces each parser's documented error."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from channels.csv.rows import (
    IMPORT_FIELDS,
    CsvError,
    MappingError,
    RowProblem,
    file_digest,
    guess_mapping,
    parse_mapping_option,
    read_csv,
    row_to_event,
)
from channels.event import InboundEvent
from channels.webform.submission import (
    FormConfig,
    FormError,
    HoneypotTripped,
    fields_from_json,
    parse_submission,
)
from channels.whatsapp.webhook import WhatsAppPayloadError, parse_webhook

NOW = datetime(2024, 1, 1, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
# Near-valid messages: the right keys with random values, so parsing gets past the envelope.
messages = st.fixed_dictionaries(
    {},
    optional={
        "from": st.sampled_from(["491711234567", "+49", ""]) | json_values,
        "from_user_id": st.sampled_from(["DE.1349120865", "US.ENT.1", "de.1", ""]) | json_values,
        "id": st.text(max_size=10) | json_values,
        "timestamp": st.sampled_from(["1700000000", "-1", "1e9", "9" * 40]) | json_values,
        "type": st.sampled_from(["text", "image", "audio", "interactive", "location", "contacts"])
        | json_values,
        "text": json_values,
        "image": json_values,
        "audio": json_values,
        "interactive": json_values,
        "location": json_values,
        "contacts": json_values,
        "context": json_values,
        "referral": json_values,
    },
)
values = st.fixed_dictionaries(
    {},
    optional={
        "metadata": json_values,
        "contacts": st.lists(json_values, max_size=3) | json_values,
        "messages": st.lists(messages, max_size=3) | json_values,
        "statuses": json_values,
    },
)


def envelope(value: Any) -> bytes:
    change = {"field": "messages", "value": value}
    root = {"object": "whatsapp_business_account", "entry": [{"changes": [change]}]}
    return json.dumps(root).encode()


@settings(max_examples=300)
@given(st.binary(max_size=300) | values.map(envelope) | json_values.map(envelope))
def test_parse_webhook_raises_only_payload_errors(body: bytes) -> None:
    try:
        batch = parse_webhook(body)
    except WhatsAppPayloadError:
        return
    for event in batch.events:
        assert event.handles  # a WhatsApp id or a business-scoped user id, never nobody
        assert all(phone.startswith("+") for phone in event.phones)
        assert event.text
        json.dumps(event.to_json())  # everything the queue stores is JSON-safe
    for rejected in batch.rejected:
        assert rejected.reason and rejected.where


form_values = st.text(max_size=30) | st.lists(st.text(max_size=30), max_size=3)
form_keys = st.sampled_from(["name", "email", "phone", "message", "website", "utm_source"])


@settings(max_examples=300)
@given(
    st.dictionaries(form_keys | st.text(max_size=10), form_values, max_size=8),
    st.sampled_from([FormConfig(key="a"), FormConfig(key="b", honeypot_field="", region="RU")]),
)
def test_parse_submission_raises_only_form_errors(
    fields: dict[str, str | list[str]], cfg: FormConfig
) -> None:
    try:
        event = parse_submission(cfg, fields, client_ip="1", submission_id="s", now=NOW)
    except (FormError, HoneypotTripped):
        return
    assert event.phones or event.emails
    json.dumps(event.to_json())


@given(json_values)
def test_fields_from_json_raises_only_form_errors(body: object) -> None:
    try:
        fields_from_json(body)
    except FormError as exc:
        assert exc.status == 400


csv_cells = st.text(alphabet=st.sampled_from(list('ab0 ;,\t"\n\r@+äЖ€')), max_size=12)


@settings(max_examples=300)
@given(
    st.binary(max_size=400)
    | st.lists(st.lists(csv_cells, max_size=5), max_size=6).flatmap(
        lambda rows: st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]).map(
            lambda enc: "\n".join(";".join(r) for r in rows).encode(enc, errors="replace")
        )
    )
)
def test_read_csv_raises_only_csv_errors_and_rows_always_convert(data: bytes) -> None:
    try:
        table = read_csv(data)
    except CsvError:
        return
    mapping = guess_mapping(table.headers)
    for row in table.rows:
        result = row_to_event(
            row.number,
            row.values,
            mapping,
            file_digest=file_digest(data),
            as_kind="contact",
            region="DE",
            now=NOW,
        )
        assert isinstance(result, InboundEvent | RowProblem)


@given(st.text(max_size=40))
def test_parse_mapping_option_raises_only_mapping_errors(option: str) -> None:
    try:
        mapping = parse_mapping_option(option)
    except MappingError:
        return
    assert all(header and field in (*IMPORT_FIELDS, "skip") for header, field in mapping.items())
