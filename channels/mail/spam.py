"""Is this mail spam or phishing? The pure layers: the upstream server's verdict headers and
cheap markers of the mail itself. (The optional scanner is `spamd.py`; `spamguard.py` runs all
three.)

Sans-I/O: the raw bytes in, a verdict with its reason out. Bounded work: headers only unless
the mail has attachments, and archives are looked into by their member names only.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from enum import StrEnum

from channels.mail.parse import ParsedMail

# fmt: off
_EXECUTABLE = frozenset({
    "exe", "scr", "com", "pif", "cpl", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh",
    "hta", "ps1", "psm1", "msi", "msp", "jar", "lnk", "reg", "iso", "img", "vhd", "vhdx", "dll",
    "sys", "application", "appref-ms", "chm", "scf", "gadget", "apk",
})
# fmt: on
_ARCHIVE = frozenset({"zip"})  # what zipfile can list; others are judged by name only
# Archives whose members cannot be listed here: suspicious as an attachment, not damning.
_OTHER_ARCHIVE = frozenset({"rar", "7z", "ace", "arj", "cab", "gz", "tgz", "bz2", "xz", "z"})
_HTML = frozenset({"htm", "html", "shtml", "xhtml", "svg"})  # fake login pages
_MACRO = frozenset({"docm", "xlsm", "pptm", "dotm", "xltm", "xlam", "ppsm"})
# Free-mail domains: anyone can register any name there.
# fmt: off
FREEMAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.de", "yahoo.co.uk", "ymail.com",
    "outlook.com", "outlook.de", "hotmail.com", "hotmail.de", "hotmail.co.uk", "live.com",
    "live.de", "msn.com", "aol.com", "aol.de", "icloud.com", "me.com", "mac.com", "gmx.de",
    "gmx.net", "gmx.at", "gmx.ch", "gmx.com", "web.de", "freenet.de", "t-online.de", "mail.ru",
    "inbox.ru", "list.ru", "bk.ru", "yandex.ru", "yandex.com", "ya.ru", "rambler.ru", "ukr.net",
    "i.ua", "proton.me", "protonmail.com", "zoho.com", "mail.com", "email.com", "qq.com",
    "163.com", "126.com",
})
# fmt: on
_ADDRESS = re.compile(r"[\w.+%'-]+@((?:[\w-]+\.)+[a-z]{2,})", re.I)
_ANGLE = re.compile(r"<\s*([^<>\s]+@[^<>\s]+)\s*>\s*$")
_RSPAMD_SPAM_ACTIONS = frozenset({"reject", "add header", "rewrite subject"})
_DMARC_FAIL = re.compile(r"\bdmarc\s*=\s*fail\b", re.I)
_DMARC_ENFORCED = re.compile(
    r"\b(?:p|policy|action)\s*=\s*\"?(reject|quarantine|oreject)\b|\(policy=(reject|quarantine)\)",
    re.I,
)
_MAX_ARCHIVE_BYTES = 20 * 1024 * 1024  # bigger archives are judged by their name only
_MAX_MEMBERS = 1000  # member names read from one archive


class SpamLayer(StrEnum):
    HEADERS = "headers"  # the upstream server's verdict
    MARKERS = "markers"  # cheap markers of the mail itself
    SCANNER = "scanner"  # spamd


@dataclass(frozen=True, slots=True)
class SpamVerdict:
    layer: SpamLayer
    reason: str  # for the log: header names, marker names, rule names; never a body


@dataclass(frozen=True, slots=True)
class SpamPolicy:
    trust_headers: bool = True  # the upstream server adds verdict headers we may believe
    markers: bool = True
    marker_score: float = 5.0  # markers adding up to this make a mail spam

    def __post_init__(self) -> None:
        if self.marker_score <= 0:
            raise ValueError("spam_marker_score must be positive")


def judge(
    raw: bytes, parsed: ParsedMail, policy_: SpamPolicy, *, robot: bool = False
) -> SpamVerdict | None:
    """The first layer that calls the mail spam, or None (pure; may take a few ms). `robot`:
    the sender is a web-form robot, whose Reply-To is the customer by design."""
    headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw)
    if policy_.trust_headers:
        reason = upstream_verdict(headers)
        if reason is not None:
            return SpamVerdict(SpamLayer.HEADERS, reason)
    if policy_.markers:
        hits = markers(raw, headers, parsed, robot=robot)
        score = sum(weight for _, weight in hits)
        if score >= policy_.marker_score:
            named = ", ".join(f"{name} ({weight:g})" for name, weight in hits)
            return SpamVerdict(
                SpamLayer.MARKERS, f"markers {score:g} ≥ {policy_.marker_score:g}: {named}"
            )
    return None


# --- layer 1: the upstream server's verdict --------------------------------------------------


def upstream_verdict(headers: Message) -> str | None:
    """SpamAssassin's, rspamd's and the DMARC verdict the receiving server wrote down."""
    for value in _all(headers, "x-spam-flag"):
        if value.strip().lower() == "yes":
            return "X-Spam-Flag: YES"
    for value in _all(headers, "x-spam-status"):
        if value.strip().lower().startswith("yes"):
            return f"X-Spam-Status: {_score_part(value)}"
    for value in _all(headers, "x-spam"):  # rspamd's "add header" action
        if value.strip().lower() == "yes":
            return "X-Spam: Yes"
    for value in _all(headers, "x-rspamd-action"):
        action = " ".join(value.lower().split())
        if action in _RSPAMD_SPAM_ACTIONS:
            return f"X-Rspamd-Action: {action}"
    for value in _all(headers, "x-spamd-result"):
        if re.match(r"\s*default:\s*true\b", value, re.I):
            return f"X-Spamd-Result: {_score_part(value)}"
    for value in _all(headers, "authentication-results"):
        for result in value.split(";"):
            if _DMARC_FAIL.search(result) and (enforced := _DMARC_ENFORCED.search(result)):
                verdict = (enforced.group(1) or enforced.group(2)).lower()
                return f"Authentication-Results: dmarc=fail, policy {verdict}"
    return None


def _all(headers: Message, name: str) -> list[str]:
    return [" ".join(str(v).split()) for v in headers.get_all(name) or []]


def _score_part(value: str) -> str:
    """The verdict and score of a status header, without its long list of tests."""
    return value.split("tests=")[0].split(";")[0].strip()[:80]


# --- layer 2: cheap markers ------------------------------------------------------------------


def markers(
    raw: bytes, headers: Message, parsed: ParsedMail, *, robot: bool = False
) -> list[tuple[str, float]]:
    """Each marker found with its weight: 5 is damning alone, 3 needs company."""
    hits: list[tuple[str, float]] = []
    spoof = _display_name_address(headers)
    if spoof is not None:
        hits.append((f"display name is another address ({spoof})", 5.0))
    reply_to = None if robot else _reply_to_elsewhere(parsed)
    if reply_to is not None:
        hits.append((reply_to, 3.0))
    if parsed.attachments:
        hits.extend(_attachment_markers(raw))
    return hits


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower().rstrip(".")


def _related(a: str, b: str) -> bool:
    """The same domain or one a subdomain of the other (mail.firma.de and firma.de)."""
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def _decoded(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except (UnicodeError, LookupError, ValueError):
        return value


def _display_name_address(headers: Message) -> str | None:
    """`"support@paypal.com" <x@evil.example>`: the name shows an address of another domain."""
    raw_from = headers.get("from")
    if raw_from is None:
        return None
    value = _decoded(" ".join(str(raw_from).split()))
    angle = _ANGLE.search(value)
    if angle is None:
        return None
    real = _domain(angle.group(1).strip())
    name = value[: angle.start()]
    for shown in _ADDRESS.finditer(name):
        if not _related(shown.group(1).lower(), real):
            return f"{shown.group(0).lower()} shown, sent from {real}"
    return None


def _reply_to_elsewhere(parsed: ParsedMail) -> str | None:
    """Answers go to another domain, and one side is a free-mail account (advance fee, CEO
    fraud). Not asked for web-form robots, whose Reply-To is the customer."""
    if parsed.reply_to is None:
        return None
    sender, reply = _domain(parsed.sender.address), _domain(parsed.reply_to.address)
    if _related(sender, reply) or not (sender in FREEMAIL or reply in FREEMAIL):
        return None
    return f"Reply-To on {reply}, From on {sender}"


def _attachment_markers(raw: bytes) -> list[tuple[str, float]]:
    message = BytesParser(policy=policy.compat32).parsebytes(raw)
    hits: dict[str, float] = {}
    for name, part in _named_parts(message):
        ext = _extension(name)
        if ext in _EXECUTABLE:
            hits[f"executable attachment {name}"] = 5.0
        elif ext in _ARCHIVE:
            inside = _executable_member(part)
            if inside is not None:
                hits[f"archive {name} holds {inside}"] = 5.0
        elif ext in _OTHER_ARCHIVE:
            hits[f"archive attachment {name}"] = 2.0
        elif ext in _HTML:
            hits[f"web page attachment {name}"] = 3.0
        elif ext in _MACRO:
            hits[f"macro document {name}"] = 3.0
    return list(hits.items())


def _named_parts(message: Message) -> Iterator[tuple[str, Message]]:
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename() or part.get_param("name")
        if isinstance(filename, tuple):  # RFC 2231 with a charset
            filename = filename[2]
        if isinstance(filename, str) and filename.strip():
            yield _decoded(filename.strip())[:200], part


def _extension(name: str) -> str:
    base = name.strip().strip(".").lower()
    return base.rsplit(".", 1)[-1] if "." in base else ""


def _executable_member(part: Message) -> str | None:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes) or len(payload) > _MAX_ARCHIVE_BYTES:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            names: Sequence[str] = archive.namelist()[:_MAX_MEMBERS]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    for member in names:
        ext = _extension(member)
        if ext in _EXECUTABLE:
            return member[:200]
    return None
