"""Turning mail bytes into text when the declared charset is missing, unknown or wrong.

Mail in the wild lies about its charset (Outlook sends windows-1252 labelled "iso-8859-1", old
Russian clients send KOI8-R labelled nothing at all). Nothing here raises: the worst case is
text with replacement characters.
"""

from __future__ import annotations

import binascii
import codecs
import re

# Tried in this order when the declared charset fails; the best plausibility score wins.
_GUESSES = ("cp1252", "cp1251", "koi8_r")
# Non-ASCII Latin letters that turn up in German/French/Spanish text. Anything else from
# Latin-1 inside a word (ð, Ï, å …) is how Cyrillic bytes look when read as cp1252.
_WESTERN = frozenset("äöüßÄÖÜéèêëàâáçîïíôóòûúùñÉÈÀÇ")
# Labels whose decoders accept every byte although the sender meant windows-1252.
_WIDENED = {"latin-1": "cp1252", "iso8859-1": "cp1252"}
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def _codec(charset: str | None) -> str | None:
    """Python's codec name for a declared charset, or None when it is unknown."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").split("*", 1)[0]  # RFC 2231 "utf-8*de"
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    return _WIDENED.get(info.name, info.name)


def _plausibility(text: str) -> int:
    """Higher for text whose non-ASCII words look like real German or Russian words."""
    score = 0
    for word in re.findall(r"[^\W\d_]+", text):
        if word.isascii():
            continue
        cyrillic = all("\u0400" <= c <= "\u04ff" for c in word)
        latin = all(c.isascii() or c in _WESTERN for c in word)
        well_cased = word.islower() or word.isupper() or word.istitle()
        score += len(word) if (cyrillic or latin) and well_cased else -len(word)
    return score


def guess_decode(data: bytes) -> str:
    """Decode bytes of unknown charset: UTF-8 if valid, else the most plausible 8-bit one."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    candidates = [data.decode(name, "replace") for name in _GUESSES]
    return max(candidates, key=_plausibility)  # max keeps the first of equal scores


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset when it fits the bytes, else guess."""
    name = _codec(charset)
    if name is not None:
        try:
            return data.decode(name)
        except (LookupError, ValueError):  # not a text codec, or bytes that do not fit
            pass
    return guess_decode(data)


def repair(text: str) -> str:
    """Re-decode the raw 8-bit bytes the email parser smuggles through as surrogates."""
    if not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    return guess_decode(text.encode("utf-8", "surrogateescape"))


def _word_bytes(encoding: str, payload: str) -> bytes:
    # Encoded words should be ASCII; raw 8-bit bytes (surrogates) and stray non-ASCII
    # characters in damaged headers must not crash the decoding.
    data = payload.encode("utf-8", "surrogateescape")
    if encoding in "Bb":
        try:
            return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
        except binascii.Error:
            return data
    return _QP_ESCAPE.sub(lambda m: bytes([int(m[1], 16)]), data.replace(b"_", b" "))


def decode_words(raw: str) -> str:
    """Decode an unstructured header value with RFC 2047 encoded words in any charset.

    Adjacent words in the same charset are joined before decoding because mailers split a
    multi-byte character across two words.
    """
    raw = _FOLD.sub("", raw)
    parts: list[str] = []
    pending: tuple[str, bytearray] | None = None
    pos = 0
    for match in _ENCODED_WORD.finditer(raw):
        between = raw[pos : match.start()]
        charset, data = match[1], _word_bytes(match[2], match[3])
        if pending is not None and not between.strip():  # whitespace between words vanishes
            if pending[0].lower() == charset.lower():
                pending[1].extend(data)
            else:
                parts.append(decode_bytes(bytes(pending[1]), pending[0]))
                pending = (charset, bytearray(data))
        else:
            if pending is not None:
                parts.append(decode_bytes(bytes(pending[1]), pending[0]))
            parts.append(repair(between))
            pending = (charset, bytearray(data))
        pos = match.end()
    if pending is not None:
        parts.append(decode_bytes(bytes(pending[1]), pending[0]))
    parts.append(repair(raw[pos:]))
    return " ".join("".join(parts).split())
