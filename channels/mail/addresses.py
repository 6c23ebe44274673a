"""Address headers (From, Reply-To, Sender, To, Cc) → mailboxes: our own strict reader.

The standard library's readers change between Python patch releases (the CVE-2023-27043 fix
made `getaddresses` return nothing for `alice@example.com <bob@example.com>`, older releases
return two addresses), so who a mail is from would depend on the interpreter. This reader is
plain string scanning: the same answer everywhere.

What it accepts, as mail clients show it: `Name <addr>` (name quoted or not, encoded words,
even an address as the name: the `<addr>` is the mailbox), a bare `addr`, `addr (Name)`,
comma-separated lists, groups (`team: a@x.example, b@x.example;`, empty ones such as
`undisclosed-recipients:;` are reported by name), an unquoted comma inside a name
(`Meier, Anna <anna@x.example>`). An address counts only when `matching.normalize_email`
accepts it, so anything kept here is an address the CRM can match; the rest (a name without
an address, `anna at example.com`, `a@b@c`) is reported as rejected text.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise

from channels.mail.charsets import ENCODED_WORD, decode_words
from matching.normalize import normalize_email
from matching.text import clean_text


@dataclass(frozen=True, slots=True)
class MailAddress:
    address: str  # lower-cased
    name: str | None = None


@dataclass(frozen=True, slots=True)
class AddressList:
    mailboxes: tuple[MailAddress, ...] = ()  # usable addresses, in order, no repeats
    rejected: tuple[str, ...] = ()  # decoded text of entries with no usable address
    empty_groups: tuple[str, ...] = ()  # names of groups without members ("list:;")


@dataclass
class _Entry:
    """One comma-separated entry as scanned: text outside <>, quotes and comments kept
    apart so the display name and the address can each be read."""

    bare: list[str] = field(default_factory=list)  # raw text outside <> and comments
    phrase: list[str] = field(default_factory=list)  # the same with quotes removed
    comments: list[str] = field(default_factory=list)
    angle: str | None = None

    def empty(self) -> bool:
        return not "".join(self.bare).strip() and self.angle is None and not self.comments


def parse_addresses(values: Iterable[str], hint: str | None = None) -> AddressList:
    """Every mailbox of the given header values (raw, encoded words still encoded).

    `hint` is the charset to try first for raw 8-bit bytes in names (the body's charset).
    """
    found: dict[str, MailAddress] = {}
    rejected: list[str] = []
    empty_groups: list[str] = []
    for value in values:
        for entries, group in _scan(value):
            if group is not None and not any(not e.empty() for e in entries):
                empty_groups.append(_name(group, hint) or group.strip())
            pending_name = ""  # "Meier" of "Meier, Anna <anna@x>" waits for its <addr>
            for entry in entries:
                if entry.empty():
                    continue
                name = _name("".join(entry.phrase), hint)
                if entry.angle is None and "@" not in "".join(entry.bare):
                    pending_name = f"{pending_name}, {name}" if pending_name else name
                    continue
                if pending_name and entry.angle is not None:
                    name = f"{pending_name}, {name}" if name else pending_name
                elif pending_name:
                    rejected.append(pending_name)
                pending_name = ""
                address = _address(entry)
                if address is None:
                    rejected.append(_name("".join(entry.bare), hint) or (entry.angle or ""))
                    continue
                if entry.angle is None:  # "addr (Name)": only a comment can name it
                    name = ""
                if not name and entry.comments:
                    name = _name(" ".join(entry.comments), hint)
                if name.lower() == address:
                    name = ""
                found.setdefault(address, MailAddress(address, name or None))
            if pending_name:
                rejected.append(pending_name)
    return AddressList(tuple(found.values()), tuple(rejected), tuple(empty_groups))


def _name(raw: str, hint: str | None) -> str:
    return decode_words(raw, hint).strip("\"' ")


def _address(entry: _Entry) -> str | None:
    """The entry's address, lower-cased, or None when it is not one usable address."""
    if entry.angle is not None:
        spec = entry.angle
        if spec.lstrip().startswith("@") and ":" in spec:  # obsolete source route
            spec = spec.split(":", 1)[1]
    else:
        spec = "".join(entry.bare)
    # Folding white space around "@" and "." is allowed (obs-local-part); anywhere else the
    # address is garbled.
    spec = "".join(spec.split()) if _only_around_dots(spec) else spec.strip()
    spec = clean_text(decode_words(spec)) if "=?" in spec else spec
    return _usable(spec)


@lru_cache(maxsize=4096)  # our own address is in every mail's To, customers write again
def _usable(spec: str) -> str | None:
    try:
        spec.encode("utf-8")  # raw bytes that are not UTF-8 make no address
    except UnicodeEncodeError:
        return None
    return spec.lower() if normalize_email(spec) is not None else None


def _only_around_dots(spec: str) -> bool:
    words = spec.split()
    return all(a[-1] in "@." or b[0] in "@." for a, b in pairwise(words))


def _scan(value: str) -> list[tuple[list[_Entry], str | None]]:
    """Split a header value into its entries, grouped: (entries, group name or None)."""
    out: list[tuple[list[_Entry], str | None]] = []
    entries: list[_Entry] = []
    entry = _Entry()
    group: str | None = None
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == "=" and (word := ENCODED_WORD.match(value, i)) is not None:
            # Sloppy encoders leave "," and ":" in encoded words ("=?utf-8?Q?Meier,_Anna?=").
            entry.bare.append(word[0])
            entry.phrase.append(word[0])
            i = word.end()
            continue
        if c == '"':
            text, i = _delimited(value, i)
            entry.bare.append(f'"{text}"')
            entry.phrase.append(text)
            continue
        if c == "(":
            text, i = _delimited(value, i)
            entry.comments.append(text)
            entry.phrase.append(" ")
            continue
        if c == "<":
            end = value.find(">", i + 1)
            end = n if end < 0 else end  # a missing ">" ends the value
            entry.angle = value[i + 1 : end].strip()
            i = end + 1
            continue
        if c == "[":  # a domain literal may hold ":" (IPv6)
            end = value.find("]", i + 1)
            end = n - 1 if end < 0 else end
            entry.bare.append(value[i : end + 1])
            entry.phrase.append(value[i : end + 1])
            i = end + 1
            continue
        if c == ":" and group is None and entry.angle is None and "@" not in "".join(entry.bare):
            if entries and not all(e.empty() for e in entries):
                out.append((entries, None))
            group, entries, entry = "".join(entry.phrase), [], _Entry()
        elif c == ";" and group is not None:
            out.append(([*entries, entry], group))
            group, entries, entry = None, [], _Entry()
        elif c == ",":
            entries.append(entry)
            entry = _Entry()
        else:
            entry.bare.append(c)
            entry.phrase.append(c)
        i += 1
    entries.append(entry)
    out.append((entries, group))  # an unterminated group keeps its members
    return out


def _delimited(value: str, start: int) -> tuple[str, int]:
    """The text of the quoted string or (possibly nested) comment opening at `start`,
    escapes undone, and the index after it; an unclosed one runs to the end."""
    opening = value[start]
    closing = '"' if opening == '"' else ")"
    chars: list[str] = []
    depth = 1
    i = start + 1
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            chars.append(value[i + 1])
            i += 2
            continue
        if c == closing:
            depth -= 1
            if depth == 0:
                return "".join(chars), i + 1
        elif c == opening == "(":
            depth += 1
        chars.append(c)
        i += 1
    return "".join(chars), i
