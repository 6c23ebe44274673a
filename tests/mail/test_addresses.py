"""Who a mail is from: the same answer for every spelling of From, on every Python release."""

from __future__ import annotations

import base64
import glob
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import html2text
import phonenumbers
import pytest

from channels.mail import MailParseError, MailPolicy, classify, parse_message, to_event
from channels.mail.addresses import parse_addresses

from . import handmade

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [pytest.param(raw, expected, id=name) for name, raw, expected in handmade.ADDRESSES],
)
def test_every_spelling_of_from_gives_the_mailbox_a_client_would_reply_to(
    raw: bytes, expected: tuple[str, str, str | None]
) -> None:
    mail = parse_message(raw)
    assert (mail.sender_header, mail.sender.address, mail.sender.name) == expected


@pytest.mark.parametrize(
    ("raw", "shown"),
    [pytest.param(raw, shown, id=name) for name, raw, shown in handmade.GARBLED_FROM],
)
def test_a_from_without_a_usable_address_is_refused_for_quarantine(raw: bytes, shown: str) -> None:
    with pytest.raises(MailParseError, match="From has no usable address") as caught:
        parse_message(raw)
    assert repr(shown) in str(caught.value)  # the log says what the header held


def test_an_address_given_as_the_name_never_becomes_the_persons_name() -> None:
    mail = parse_message(handmade.mail("From: alice@example.com <bob@example.com>"))
    event = to_event(
        mail,
        "sales",
        "DE",
        MailPolicy(),
        classify(mail, MailPolicy(), 0),
        now=datetime.now(UTC),
    )
    assert event.emails == ("bob@example.com",) and event.display_name is None


def test_recipient_lists_keep_every_usable_address_and_name_empty_groups() -> None:
    found = parse_addresses(
        [
            'info@beispiel-shop.de, "Lange, Julia" <julia@beispiel-shop.de>, kaputt',
            "undisclosed-recipients:;, Einkauf: a@kunde.example;",
        ]
    )
    assert [(a.address, a.name) for a in found.mailboxes] == [
        ("info@beispiel-shop.de", None),
        ("julia@beispiel-shop.de", "Lange, Julia"),
        ("a@kunde.example", None),
    ]
    assert found.rejected == ("kaputt",)
    assert found.empty_groups == ("undisclosed-recipients",)


# --- the same results on every interpreter at hand ------------------------------------------

_PROBE = """
import base64, json, sys
from channels.mail import MailParseError, MailPolicy, classify, parse_message
out = []
for data in json.load(sys.stdin):
    try:
        mail = parse_message(base64.b64decode(data))
    except MailParseError as exc:
        out.append(["error", str(exc)])
        continue
    verdict = classify(mail, MailPolicy(), 0)
    out.append([mail.sender_header, mail.sender.address, mail.sender.name, mail.subject,
                mail.text, [[a.name, a.size] for a in mail.attachments], verdict.reason])
json.dump([sys.version_info[:2], out], sys.stdout)
"""


def _outcomes(raws: list[bytes]) -> list[Any]:
    """What `_PROBE` prints, computed in this interpreter."""
    out: list[Any] = []
    for data in raws:
        try:
            mail = parse_message(data)
        except MailParseError as exc:
            out.append(["error", str(exc)])
            continue
        verdict = classify(mail, MailPolicy(), 0)
        attachments = [[a.name, a.size] for a in mail.attachments]
        out.append(
            [
                mail.sender_header,
                mail.sender.address,
                mail.sender.name,
                mail.subject,
                mail.text,
                attachments,
                verdict.reason,
            ]
        )
    return out


def _other_interpreters() -> list[str]:
    """Python 3.12+ interpreters on this machine other than the running one: on PATH, from
    pyenv, or named in LEADBOT_TEST_PYTHONS."""
    names = os.environ.get("LEADBOT_TEST_PYTHONS", "").split()
    names += [p for v in ("3.12", "3.13", "3.14") if (p := shutil.which(f"python{v}"))]
    names += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python3")))
    found: dict[str, str] = {}
    for name in names:
        try:
            version = subprocess.run(
                [name, "-c", "import sys; print(sys.version.split()[0])"],
                capture_output=True,
                text=True,
                timeout=20,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            continue  # a pyenv shim for a version that is not selected, a broken link …
        if version != sys.version.split()[0]:
            found.setdefault(version, name)
    return list(found.values())


def test_every_interpreter_at_hand_reads_the_hand_made_mails_alike() -> None:
    """Python patch releases changed the standard library's address parsing; nothing the
    mail channel decides may change with them (CI runs this wherever a second interpreter
    is installed)."""
    interpreters = _other_interpreters()
    if not interpreters:
        pytest.skip("no second Python 3.12+ interpreter on this machine")
    raws = [raw for _, raw, _ in handmade.ADDRESSES]
    raws += [raw for _, raw, _ in handmade.GARBLED_FROM + handmade.BOUNCES + handmade.LISTS]
    raws += [raw for _, raw, _ in handmade.CHARSETS] + [raw for _, raw in handmade.CUSTOMERS]
    raws += [handmade.KOI8_HEADERS, handmade.NO_BOUNDARY_TEXT, handmade.NO_BOUNDARY_BINARY]
    raws += [handmade.FORWARDED]
    expected = json.loads(json.dumps(_outcomes(raws)))
    # The mail parser's dependencies are pure Python: the copies this run uses load on any
    # release.
    libs = {str(Path(m.__file__ or "").parents[1]) for m in (html2text, phonenumbers)}
    path = os.pathsep.join([str(ROOT), *sorted(libs)])
    for interpreter in interpreters:
        done = subprocess.run(
            [interpreter, "-c", _PROBE],
            input=json.dumps([base64.b64encode(r).decode() for r in raws]),
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        version, got = json.loads(done.stdout)
        assert version[:2] != list(sys.version_info[:2]) or got == expected
        for index, (theirs, ours) in enumerate(zip(got, expected, strict=True)):
            assert theirs == ours, f"{interpreter} mail #{index}: {theirs} != {ours}"
