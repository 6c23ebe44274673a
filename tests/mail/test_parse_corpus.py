"""Every sample and hand-made mail parses and classifies exactly as recorded in
parsed_corpus.json: the parser's speed-ups must not change a single field or verdict.

After a deliberate change of behaviour, rewrite the record and review its diff:
    python -m tests.mail.test_parse_corpus
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from channels.mail.filters import MailPolicy, classify
from channels.mail.parse import MailParseError, parse_message

from . import handmade
from .samples import SAMPLES

RECORD = Path(__file__).with_name("parsed_corpus.json")
POLICY = MailPolicy(own_addresses=frozenset({"info@beispiel-shop.de"}))


def _mails(value: Any, name: str) -> Iterator[tuple[str, bytes]]:
    if isinstance(value, bytes):
        yield name, value
    elif isinstance(value, list | tuple):
        for k, item in enumerate(value):
            yield from _mails(item, f"{name}[{k}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _mails(item, f"{name}[{key!r}]")


def corpus() -> dict[str, bytes]:
    """The sample files and every mail the hand-made tables hold."""
    mails = {f"samples/{f.name}": f.read_bytes() for f in sorted(SAMPLES.glob("*.eml"))}
    for attr in sorted(vars(handmade)):
        if not attr.startswith("__"):
            mails.update(_mails(getattr(handmade, attr), f"handmade.{attr}"))
    return mails


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def outcome(raw: bytes) -> Any:
    """What parse + classify make of `raw`, as JSON."""
    try:
        parsed = parse_message(raw, phone_region="DE")
    except MailParseError as exc:
        return {"error": str(exc)}
    verdict = classify(parsed, POLICY, 0)
    return {"parsed": _plain(parsed), "verdict": [verdict.kind.value, verdict.reason]}


def record() -> dict[str, Any]:
    return {name: outcome(raw) for name, raw in corpus().items()}


RECORDED: dict[str, Any] = json.loads(RECORD.read_text()) if RECORD.exists() else {}


def test_the_record_covers_the_corpus() -> None:
    assert sorted(RECORDED) == sorted(corpus())
    assert len(RECORDED) > 40


@pytest.mark.parametrize("name", sorted(corpus()))
def test_mail_parses_and_classifies_as_recorded(name: str) -> None:
    assert json.loads(json.dumps(outcome(corpus()[name]))) == RECORDED[name]


if __name__ == "__main__":
    RECORD.write_text(json.dumps(record(), indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"{len(RECORDED)} → {len(record())} mails written to {RECORD}")
