"""Hand-made mails of the shapes real mail takes: odd From headers, bounces and list mail
that lack the standard markers, mislabelled charsets, broken MIME. Each table row is
(id, raw bytes, what a rep must end up with); the unit tests, the cross-interpreter test
and the IMAP tests share them."""

from __future__ import annotations

import base64

CUSTOMER_BODY = "Guten Tag,\r\nbitte schicken Sie uns ein Angebot für 40 Pflanzkübel.\r\n"


def mail(
    *headers: str | bytes,
    body: str | bytes = CUSTOMER_BODY,
    content_type: str = "text/plain; charset=utf-8",
    message_id: str = "<handmade@example.org>",
) -> bytes:
    """A mail with the given header lines (str: UTF-8, bytes: as they are) and body."""
    lines = [h if isinstance(h, bytes) else h.encode() for h in headers]
    names = {line.split(b":", 1)[0].lower() for line in lines}
    if b"subject" not in names:
        lines.append(b"Subject: Anfrage")
    if b"to" not in names:
        lines.append(b"To: info@beispiel-shop.de")
    lines += [
        f"Message-ID: {message_id}".encode(),
        b"Date: Tue, 4 Jun 2024 09:00:00 +0200",
        b"MIME-Version: 1.0",
        f"Content-Type: {content_type}".encode(),
    ]
    data = body if isinstance(body, bytes) else body.encode()
    return b"\r\n".join(lines) + b"\r\n\r\n" + data


def _b(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


# From header → (header the sender was read from, address, display name).
ADDRESSES: list[tuple[str, bytes, tuple[str, str, str | None]]] = [
    (
        "address-as-name",
        mail("From: alice@example.com <bob@example.com>"),
        ("from", "bob@example.com", "alice@example.com"),
    ),
    (
        "quoted-address-as-name",
        mail('From: "alice@example.com" <bob@example.com>'),
        ("from", "bob@example.com", "alice@example.com"),
    ),
    (
        "plain-name-addr",
        mail("From: Anna Schmidt <Anna.Schmidt@Gartenbau.Example>"),
        ("from", "anna.schmidt@gartenbau.example", "Anna Schmidt"),
    ),
    (
        "unquoted-comma",
        mail("From: Meier, Anna <anna.meier@example.de>"),
        ("from", "anna.meier@example.de", "Meier, Anna"),
    ),
    (
        "comment-name",
        mail("From: anna@example.de (Anna Schmidt)"),
        ("from", "anna@example.de", "Anna Schmidt"),
    ),
    (
        "encoded-name",
        mail(f"From: {_b('Сергей Обухов')} <sergej@example.ru>"),
        ("from", "sergej@example.ru", "Сергей Обухов"),
    ),
    ("angle-only", mail("From: <anna@example.de>"), ("from", "anna@example.de", None)),
    (
        "missing-closing-angle",
        mail("From: Anna <anna@example.de"),
        ("from", "anna@example.de", "Anna"),
    ),
    (
        "source-route",
        mail("From: Anna <@relay.example.net:anna@example.de>"),
        ("from", "anna@example.de", "Anna"),
    ),
    ("spaces-around-at", mail("From: anna @ example.de"), ("from", "anna@example.de", None)),
    (
        "group",
        mail("From: Einkauf: anna@example.de, bernd@example.de;"),
        ("from", "anna@example.de", None),
    ),
    (
        "comma-in-encoded-name",
        mail("From: =?utf-8?Q?M=C3=BCller,_Hans:_Einkauf?= <hans.mueller@example.de>"),
        ("from", "hans.mueller@example.de", "Müller, Hans: Einkauf"),
    ),
    (
        "name-only-with-reply-to",
        mail("From: Сергей Обухов", "Reply-To: sergej@example.ru"),
        ("reply-to", "sergej@example.ru", "Сергей Обухов"),
    ),
    (
        "garbled-with-sender",
        mail("From: Anna Schmidt <anna at example.de>", "Sender: Anna <anna@example.de>"),
        ("sender", "anna@example.de", "Anna"),
    ),
]

# From headers no one can answer, with no Reply-To or Sender: quarantine, with why.
GARBLED_FROM: list[tuple[str, bytes, str]] = [
    ("name-only-utf8", mail("From: Сергей Обухов"), "Сергей Обухов"),
    ("name-only-encoded", mail(f"From: {_b('Сергей Обухов')}"), "Сергей Обухов"),
    ("name-only-latin", mail("From: Sergej Obukhov"), "Sergej Obukhov"),
    ("at-spelled-out", mail("From: anna at example.de"), "anna at example.de"),
    ("no-domain", mail("From: anna@"), "anna@"),
    ("two-ats", mail("From: a@b@example.de"), "a@b@example.de"),
    ("empty-angle", mail("From: Anna <>"), "Anna"),
    ("space-in-domain", mail("From: Anna <anna@exa mple.de>"), "Anna"),
    ("empty-group", mail("From: undisclosed-recipients:;"), "undisclosed-recipients:;"),
]

# Robot mail without the standard markers → the reason logged.
BOUNCES: list[tuple[str, bytes, str]] = [
    (
        "gmail-style-name",
        mail(
            "From: Mail Delivery Subsystem <notifications@mx.provider.example>",
            "Subject: Nachricht",
        ),
        "bounce: sent by 'Mail Delivery Subsystem'",
    ),
    (
        "postfix-style-name",
        mail("From: Mail Delivery System <system@mx.provider.example>", "Subject: Hinweis"),
        "bounce: sent by 'Mail Delivery System'",
    ),
    (
        "return-path-daemon",
        mail(
            "Return-Path: <MAILER-DAEMON@mx.provider.example>",
            "From: Zustellung <service@provider.example>",
            "Subject: Ihre Nachricht",
        ),
        "bounce: Return-Path <MAILER-DAEMON@mx.provider.example>",
    ),
    (
        "could-not-be-delivered",
        mail("From: service@provider.example", "Subject: Mail could not be delivered"),
        "bounce: delivery failure text (Mail could not be delivered)",
    ),
    (
        "returned-to-sender",
        mail("From: service@provider.example", "Subject: Undelivered Mail Returned to Sender"),
        "bounce: delivery failure text (Undelivered Mail Returned to Sender)",
    ),
    (
        "dsn-failure-subject",
        mail("From: service@provider.example", "Subject: Delivery Status Notification (Failure)"),
        "bounce: delivery failure text (Delivery Status Notification (Failure))",
    ),
    (
        "exim-failed-recipients",
        mail("From: service@provider.example", "X-Failed-Recipients: kunde@example.org"),
        "bounce: X-Failed-Recipients kunde@example.org",
    ),
]
LISTS: list[tuple[str, bytes, str]] = [
    (
        "request-address",
        mail("From: handwerk-request@lists.example.org"),
        "mailing list: sent by list address handwerk-request@lists.example.org",
    ),
    (
        "admin-address",
        mail("From: Forum <handwerk-admin@lists.example.org>"),
        "mailing list: sent by list address handwerk-admin@lists.example.org",
    ),
    (
        "bounces-address",
        mail("From: handwerk-bounces+kunde=example.org@lists.example.org"),
        "mailing list: sent by list address handwerk-bounces+kunde=example.org@lists.example.org",
    ),
    (
        "owner-address",
        mail("From: owner-handwerk@lists.example.org"),
        "mailing list: sent by list address owner-handwerk@lists.example.org",
    ),
    (
        "majordomo-sender",
        mail("From: Anna <anna@example.de>", "Sender: owner-handwerk@lists.example.org"),
        "mailing list: sent by list address owner-handwerk@lists.example.org",
    ),
    (
        "mailman-mailer",
        mail("From: anna@example.de", "X-Mailer: Mailman (2.1.39)"),
        "mailing list: X-Mailer Mailman",
    ),
    (
        "listserv-mailer",
        mail("From: anna@example.de", "X-Mailer: LISTSERV-TCP/IP release 16.5"),
        "mailing list: X-Mailer LISTSERV",
    ),
    (
        "digest",
        mail(
            "From: forum@lists.example.org",
            content_type='multipart/digest; boundary="d"',
            body="--d\r\n\r\nFrom: a@example.de\r\nSubject: eins\r\n\r\nText\r\n--d--\r\n",
        ),
        "mailing list: multipart/digest",
    ),
    (
        "group-to",
        mail("From: angebote@versand.example", "To: list:;"),
        "bulk: To is the empty group 'list:;'",
    ),
]
# Customer mail that looks a little like the above and must stay a lead.
CUSTOMERS: list[tuple[str, bytes]] = [
    ("request-in-local-part", mail("From: anfrage.request@kunde.example")),
    ("admin-word", mail("From: Admin Meier <admin@kunde.example>")),
    ("delivery-in-subject", mail("From: anna@example.de", "Subject: Lieferung nicht erhalten")),
    ("bcc-plus-to", mail("From: anna@example.de", "To: info@beispiel-shop.de, list:;")),
    ("mailer-thunderbird", mail("From: anna@example.de", "X-Mailer: Thunderbird 115")),
    (
        "on-behalf-of",
        mail("From: Chef <chef@kunde.example>", "Sender: Sekretariat <sekretariat@kunde.example>"),
    ),
]

# Body bytes, declared charset → what the rep reads.
_RU = "Здравствуйте, пришлите, пожалуйста, коммерческое предложение на три компрессора."


def _mislabelled(name: str, text: str, written_in: str, declared: str) -> tuple[str, bytes, str]:
    body = text.encode(written_in)
    return name, mail("From: kunde@example.org", body=body, content_type=declared), text


_BAD_UTF8 = _RU[:20].encode() + b"\xff" + _RU[20:].encode()
CHARSETS: list[tuple[str, bytes, str]] = [
    (
        "utf8-one-bad-byte",
        mail("From: ivan@example.ru", body=_BAD_UTF8),
        _RU[:20] + "\ufffd" + _RU[20:],
    ),
    (
        "undeclared-utf8-one-bad-byte",
        mail("From: ivan@example.ru", body=_BAD_UTF8, content_type="text/plain"),
        _RU[:20] + "\ufffd" + _RU[20:],
    ),
    _mislabelled(
        "gb2312-holding-gbk", "朱镕基先生：请报价", "gb18030", "text/plain; charset=gb2312"
    ),
    _mislabelled(
        "big5-holding-hkscs", "我哋想買嘢，唔該報價", "big5hkscs", "text/plain; charset=big5"
    ),
    _mislabelled(
        "shift-jis-holding-cp932",
        "髙橋です。①番の見積りをお願いします",
        "cp932",
        "text/plain; charset=shift_jis",
    ),
    _mislabelled(
        "euc-kr-holding-cp949", "똠방각하 견적 부탁드립니다", "cp949", "text/plain; charset=euc-kr"
    ),
    _mislabelled(
        "latin1-holding-cp1252",
        "„Angebot“ bis 500 € – danke",
        "cp1252",
        "text/plain; charset=iso-8859-1",
    ),
    _mislabelled(
        "ascii-holding-cp1252", "Grüße aus Köln", "cp1252", "text/plain; charset=us-ascii"
    ),
    _mislabelled("ascii-holding-utf8", "Grüße aus Köln", "utf-8", "text/plain; charset=us-ascii"),
    _mislabelled(
        "latin1-holding-utf8", "Grüße aus Köln", "utf-8", "text/plain; charset=iso-8859-1"
    ),
]

# Raw 8-bit KOI8-R header bytes (all lower case, which no guess can tell from windows-1251)
# in a mail whose body declares koi8-r.
KOI8_HEADERS = mail(
    b"From: " + "иван петров".encode("koi8_r") + b" <ivan@example.ru>",
    b"Subject: " + "заказ компрессоров".encode("koi8_r"),
    body="добрый день".encode("koi8_r"),
    content_type="text/plain; charset=koi8-r",
)

# A multipart whose boundary never shows, with a plain-text body.
NO_BOUNDARY_TEXT = mail(
    "From: Anna <anna@example.de>",
    content_type='multipart/mixed; boundary="never-seen"',
    body="Guten Tag,\r\nbitte rufen Sie mich an.\r\nAnna\r\n",
)
# The same with a body that is no text at all: quarantine.
NO_BOUNDARY_BINARY = mail(
    "From: Anna <anna@example.de>",
    content_type='multipart/mixed; boundary="never-seen"',
    body=bytes(range(256)) * 4,
)
FORWARDED_INNER = (
    b"From: Bernd <bernd@example.de>\r\nSubject: Original\r\nMessage-ID: <inner@example.de>\r\n"
    b"\r\n" + b"Die urspruengliche Anfrage, Zeile fuer Zeile.\r\n" * 40
)
FORWARDED = mail(
    "From: Anna <anna@example.de>",
    content_type='multipart/mixed; boundary="b1"',
    body=(
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSiehe Anhang.\r\n"
        b"--b1\r\nContent-Type: message/rfc822\r\n"
        b'Content-Disposition: attachment; filename="anfrage.eml"\r\n\r\n'
        + FORWARDED_INNER
        + b"\r\n--b1--\r\n"
    ),
)
