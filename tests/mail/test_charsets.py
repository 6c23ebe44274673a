"""Mislabelled and damaged text reaches the rep readable; broken MIME is read as clients do."""

from __future__ import annotations

import pytest

from channels.mail import MailParseError, parse_message
from channels.mail.charsets import decode_bytes, decode_words

from . import handmade


@pytest.mark.parametrize(
    ("raw", "text"),
    [pytest.param(raw, text, id=name) for name, raw, text in handmade.CHARSETS],
)
def test_bodies_read_as_written(raw: bytes, text: str) -> None:
    assert parse_message(raw).text == text


def test_a_few_bad_bytes_keep_the_declared_charset_many_do_not() -> None:
    russian = "Добрый день, нам нужны три компрессора и шланги к ним. " * 3
    damaged = russian[:15].encode() + b"\xff\xfe" + russian[15:].encode()
    assert decode_bytes(damaged, "utf-8") == russian[:15] + "\ufffd\ufffd" + russian[15:]
    # Text that is not UTF-8 at all, labelled UTF-8: read in the charset it was written in.
    assert decode_bytes(russian.encode("cp1251"), "utf-8") == russian
    assert decode_bytes("Türgriffe, nächste Woche".encode("cp1252"), "utf-8") == (
        "Türgriffe, nächste Woche"
    )


def test_raw_8bit_headers_are_read_in_the_bodys_charset() -> None:
    mail = parse_message(handmade.KOI8_HEADERS)
    assert mail.sender.name == "иван петров"
    assert mail.subject == "заказ компрессоров"
    assert mail.text == "добрый день"
    # Raw UTF-8 (RFC 6532) stays UTF-8 whatever the body declares.
    assert decode_words("Grüße".encode().decode("ascii", "surrogateescape"), "koi8-r") == "Grüße"


def test_a_multipart_whose_boundary_never_shows_is_read_as_plain_text() -> None:
    mail = parse_message(handmade.NO_BOUNDARY_TEXT)
    assert mail.text == "Guten Tag,\nbitte rufen Sie mich an.\nAnna"
    assert mail.preview.startswith("Guten Tag") and mail.attachments == ()


def test_a_multipart_whose_boundary_never_shows_and_holds_no_text_is_refused() -> None:
    with pytest.raises(MailParseError, match="broken boundary"):
        parse_message(handmade.NO_BOUNDARY_BINARY)


def test_an_attached_message_is_listed_with_its_real_size() -> None:
    mail = parse_message(handmade.FORWARDED)
    [attached] = mail.attachments
    assert (attached.name, attached.content_type) == ("anfrage.eml", "message/rfc822")
    assert attached.size == len(handmade.FORWARDED_INNER)
