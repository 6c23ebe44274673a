"""What a rep sees of a customer's mail: readable names, subjects, bodies, files and phones."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.mail import MailParseError, parse_message
from channels.mail.body import preview
from channels.mail.charsets import decode_bytes, decode_words
from matching.text import is_clean

from .samples import SAMPLES, parsed, raw


def test_simple_customer_mail_reads_as_written() -> None:
    mail = parsed("plain_customer.eml")
    assert mail.sender.address == "anna.schmidt@gartenbau-schmidt.de"
    assert mail.sender.name == "Anna Schmidt"
    assert mail.subject == "Anfrage: 40 Pflanzkübel für Firmengelände"
    assert mail.message_id == "<5f1c2a90-1d2e-4b7a-9a51-3c2e1f0d9b11@gartenbau-schmidt.de>"
    assert mail.date == datetime(2024, 6, 4, 7, 12, 40, tzinfo=UTC)
    assert mail.to == ("info@beispiel-shop.de",)
    assert "40 Pflanzkübel" in mail.preview
    assert mail.attachments == ()


def test_german_encoded_words_in_subject_and_name() -> None:
    mail = parsed("german_encoded_words.eml")
    # Two Q-encoded ISO-8859-1 words folded over two lines join without a gap.
    assert mail.subject == "Rückfrage zu Ihrem Angebot über Stahlträger Größe M"
    assert mail.sender.name == "Jürgen Weiß"  # B-encoded UTF-8
    assert "verzinkte Ausführung" in mail.text


def test_russian_koi8r_subject_name_and_body() -> None:
    mail = parsed("russian_koi8r.eml")
    assert mail.subject == "Запрос цены на оборудование"
    assert mail.sender.name == "Иван Петров"
    assert "коммерческое предложение на 3 компрессора" in mail.text


def test_russian_windows_1251_quoted_printable_body() -> None:
    mail = parsed("russian_cp1251.eml")
    assert mail.subject == "Заказ № 1187"
    assert mail.sender.name == "Ольга Смирнова"
    assert "ООО «Стройкомплект»" in mail.preview


def test_attachment_names_from_rfc2231_and_rfc2047_parameters() -> None:
    mail = parsed("attachments_rfc2231.eml")
    names = [(a.name, a.content_type) for a in mail.attachments]
    assert names == [
        ("Grundriss Halle Süd.pdf", "application/pdf"),
        # windows-1251, split over two RFC 2231 continuations
        ("Прайс-лист поставщика.xls", "application/vnd.ms-excel"),
        # Outlook style: an RFC 2047 word inside a quoted filename
        ("Foto Baustelle München.jpg", "image/jpeg"),
    ]
    assert mail.attachments[0].size == 52  # bytes after base64 decoding
    assert mail.text == "Anbei die Zeichnung und die Preisliste unseres Lieferanten."


def test_body_declared_utf8_but_written_in_windows_1252() -> None:
    mail = parsed("broken_charset.eml")
    assert "können Sie die Türgriffe schon nächste Woche liefern?" in mail.text
    assert mail.subject == "Lieferung für nächste Woche"  # charset "unknown-8bit"


def test_unknown_charset_labels_fall_back_to_a_plausible_guess() -> None:
    mail = parsed("unknown_charset_label.eml")
    assert mail.sender.name == "Дмитрий"
    assert mail.text == "Спасибо, цена нас устраивает. Дмитрий"


def test_multipart_alternative_prefers_the_plain_text() -> None:
    mail = parsed("multipart_alternative.eml")
    assert "(Plain-Fassung)" in mail.text
    assert "HTML-Fassung" not in mail.text
    assert mail.attachments == ()


def test_html_only_mail_becomes_readable_text() -> None:
    mail = parsed("html_only.eml")
    assert "für unser Sommerfest am 20.07. benötigen wir" in mail.text
    assert "3 Faltzelte (6 × 3 m) & 10 Bierzeltgarnituren." in mail.text
    assert "<" not in mail.text and "font-family" not in mail.text


def test_german_quoted_reply_is_trimmed_from_the_preview() -> None:
    mail = parsed("quoted_reply_german.eml")
    assert mail.preview == (
        "Hallo Frau Lange,\n\ndanke, wir nehmen die Variante B. Bitte Lieferung ab KW 27."
        "\n\nPeter Wagner"
    )
    assert mail.hint_phones == ()  # our rep's number in the quote is not the customer's


def test_outlook_reply_header_block_is_trimmed() -> None:
    mail = parsed("outlook_reply.eml")
    assert mail.preview.endswith("Viele Grüße\nStefan Hoffmann")
    assert "Gesendet" not in mail.preview and "____" not in mail.preview
    assert mail.sender.name == "Hoffmann, Stefan"
    assert mail.hint_phones == ()


@pytest.mark.parametrize(
    "quoted",
    [
        "On Mon, 3 Jun 2024 at 10:00, Julia Lange <vertrieb@beispiel-shop.de> wrote:\n> old",
        "On Mon, 3 Jun 2024 at 10:00, Julia Lange <\nvertrieb@beispiel-shop.de> wrote:\n> old",
        "-----Original Message-----\nFrom: Julia Lange\nSent: Monday\nold",
        "From: Julia Lange <vertrieb@beispiel-shop.de>\nSent: Monday, June 3, 2024\nold",
        "3 июня 2024 г., в 10:15, Юлия <vertrieb@beispiel-shop.de> написал(а):\n> old",
    ],
)
def test_other_reply_styles_are_trimmed(quoted: str) -> None:
    assert preview(f"Yes, please deliver.\n\n{quoted}\nold quote text") == "Yes, please deliver."


def test_long_bodies_are_cut_to_a_short_preview() -> None:
    text = "Wir brauchen " + "sehr viele Schrauben " * 60
    short = preview(text)
    assert 400 < len(short) <= 502 and short.endswith(" …")


def test_signature_is_trimmed_but_its_phones_become_hints() -> None:
    mail = parsed("signature_phones.eml")
    assert mail.preview == "Hallo,\n\nbitte rufen Sie mich wegen der Behandlungsliegen zurück."
    assert mail.hint_phones == ("+49 30 7812345", "0171 2345678")
    # Without a region only international numbers can be recognised.
    assert parsed("signature_phones.eml", region=None).hint_phones == ("+49 30 7812345",)


def test_form_robot_mail_keeps_reply_to() -> None:
    mail = parsed("form_robot.eml")
    assert mail.sender.address == "wordpress@beispiel-shop.de"
    assert mail.reply_to is not None
    assert (mail.reply_to.name, mail.reply_to.address) == (
        "Lukas Richter",
        "lukas.richter@example.org",
    )
    assert mail.hint_phones == ("0221 4567890",)


def test_reply_threading_headers() -> None:
    mail = parsed("threaded_reply.eml")
    assert mail.in_reply_to == "<offer-3311@beispiel-shop.de>"
    assert mail.references == ("<9d8c7b6a-alt@becker-logistik.de>", "<offer-3311@beispiel-shop.de>")
    assert mail.thread_ids == ("<offer-3311@beispiel-shop.de>", "<9d8c7b6a-alt@becker-logistik.de>")


def test_missing_message_id_gets_a_stable_synthetic_one() -> None:
    data = raw("missing_message_id.eml")
    mail = parse_message(data)
    assert mail.synthetic_id
    assert mail.message_id == f"<{hashlib.sha256(data).hexdigest()}@synthetic.leadbot>"
    assert parse_message(data).message_id == mail.message_id
    assert parse_message(data + b"\n").message_id != mail.message_id
    assert mail.sender.name is None and mail.sender.address == "kontakt@kleiner-laden.example"


def test_a_multipart_under_the_wrong_boundary_reads_as_its_text() -> None:
    # Mail clients show a multipart whose boundary never appears as plain text; so do we.
    mail = parse_message(raw("broken_mime.eml"))
    assert "Der Text steht hinter einer Grenze, die im Kopf anders heißt." in mail.text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"just some text\nwithout any header\n", "no header"),
        (b"Subject: hello\n\nno sender\n", "no From"),
        (b"From: \nSubject: hello\n\nempty sender\n", "no From"),
    ],
)
def test_unusable_bytes_raise_a_clear_error(data: bytes, reason: str) -> None:
    with pytest.raises(MailParseError, match=reason):
        parse_message(data)


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        (
            "Mon, 3 Jun 2024 10:00:00 +0300",
            datetime(2024, 6, 3, 10, tzinfo=timezone(timedelta(hours=3))),
        ),
        ("Mon, 3 Jun 2024 10:00:00 -0000", datetime(2024, 6, 3, 10, tzinfo=UTC)),
        ("gestern nachmittag", None),
        ("", None),
    ],
)
def test_dates_are_aware_or_none(date: str, expected: datetime | None) -> None:
    mail = parse_message(f"From: a@b.de\nDate: {date}\n\nhi\n".encode())
    assert mail.date == expected
    assert mail.date is None or mail.date.tzinfo is not None


def test_raw_8bit_headers_and_split_multibyte_words_decode() -> None:
    assert decode_words("=?utf-8?B?0JfQsA==?= =?utf-8?B?0LrQsNC3?=") == "Заказ"
    assert decode_words("=?utf-8?Q?M=C3?= =?utf-8?Q?=BCller?=") == "Müller"
    head = "Subject: Grüße aus Köln\nFrom: a@b.de\n\nhi\n".encode()
    assert parse_message(head).subject == "Grüße aus Köln"


def test_stray_non_ascii_inside_an_encoded_word_is_tolerated() -> None:
    # Seen in damaged attachment names: the encoded word itself carries a non-ASCII character.
    assert decode_words("=?utf-8?Q?M=C3=BCnchen_\ufffd?=") == "München \ufffd"
    assert decode_words("=?utf-8?B?0JfQsA=\u00e9=?=") == "За"


def test_decoding_never_raises_on_nonsense_charsets() -> None:
    assert decode_bytes(b"caf\xe9", "base64") == "café"  # not a text codec
    assert decode_bytes(b"caf\xe9", "no-such-charset") == "café"
    assert decode_bytes("Grüße".encode("cp1252"), "utf-8") == "Grüße"  # label lies


def test_every_sample_is_used_by_a_test() -> None:
    here = SAMPLES.parent / "mail"
    sources = "".join(p.read_text() for p in here.glob("test_*.py"))
    unused = [p.name for p in SAMPLES.glob("*.eml") if p.name not in sources]
    assert unused == []


@settings(max_examples=300, deadline=None)
@given(
    sample=st.sampled_from(sorted(p.name for p in SAMPLES.glob("*.eml"))),
    cut=st.integers(min_value=0, max_value=4000),
    junk=st.binary(max_size=64),
)
def test_damaged_mail_parses_or_raises_mail_parse_error(sample: str, cut: int, junk: bytes) -> None:
    data = raw(sample)
    damaged = data[:cut] + junk + data[cut + len(junk) :]
    try:
        mail = parse_message(damaged, phone_region="DE")
    except MailParseError:
        return
    assert mail.message_id.startswith("<") and mail.sender.address
    # Nothing a database cannot store (NUL, lone surrogates, control characters) gets out.
    texts = [mail.text, mail.preview, mail.subject, mail.message_id, mail.sender.address]
    texts += [mail.sender.name or "", *mail.to, *mail.cc, *mail.references, *mail.hint_phones]
    texts += [*mail.headers.values(), *(a.name for a in mail.attachments)]
    assert all(is_clean(text) for text in texts), texts


def test_unstorable_header_text_is_cleaned_as_the_mail_is_parsed() -> None:
    mail = parse_message(
        b"From: =?utf-8?q?Anna=00_?= =?utf-7?q?Meier+2AA-?= <=?utf-8?q?an=00na?=@gift.example>\r\n"
        b"Reply-To: =?utf-8?q?b=00?=@gift.example\r\n"
        b"Subject: =?utf-7?q?K+2AA-bel?=\x01\r\nAuto-Submitted: no=?utf-8?q?=00?=\r\n\r\n"
        b"Hallo\x00\x1b Welt\r\n"
    )
    assert (mail.sender.address, mail.sender.name) == ("anna@gift.example", "Anna Meier\ufffd")
    assert mail.reply_to is not None and mail.reply_to.address == "b@gift.example"
    assert mail.subject == "K\ufffdbel"
    assert mail.headers["auto-submitted"] == "no"
    assert mail.text.strip() == "Hallo Welt"
