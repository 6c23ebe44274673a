"""Access to the golden mails under tests/samples."""

from __future__ import annotations

from pathlib import Path

from channels.mail import ParsedMail, parse_message

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def raw(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def parsed(name: str, region: str | None = "DE") -> ParsedMail:
    return parse_message(raw(name), phone_region=region)
