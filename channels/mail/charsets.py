"""Turning mail bytes into text when the declared charset is missing, unknown or wrong.

Mail in the wild lies about its charset (Outlook sends windows-1252 labelled "iso-8859-1", old
Russian clients send KOI8-R labelled nothing at all). Nothing here raises: the worst case is
text with replacement characters.
"""

from __future__ import annotations

import binascii
import codecs
import re
from functools import lru_cache

# Tried in this order when the declared charset fails; the best plausibility score wins.
_GUESSES = ("cp1252", "cp1251", "koi8_r")
# Non-ASCII Latin letters that turn up in German/French/Spanish text. Anything else from
# Latin-1 inside a word (ð, Ï, å …) is how Cyrillic bytes look when read as cp1252.
_WESTERN = frozenset("äöüßÄÖÜéèêëàâáçîïíôóòûúùñÉÈÀÇ")
# Labels mailers use for text written in a superset (what browsers do, WHATWG Encoding):
# Windows and HKSCS characters under the older standard's name. us-ascii is not here: 8-bit
# bytes under that label are guessed (UTF-8 first, then windows-1252 unless another 8-bit
# charset reads clearly better).
_WIDENED = {
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
}
# Labels seen in mail that Python does not know.
_ALIASES = {"windows-31j": "cp932", "x-sjis": "cp932", "x-gbk": "gbk"}
# A part whose bytes decode but for a few: at least this many good non-ASCII characters per
# bad byte, and the declared charset is right with a replacement character per bad byte.
_GOOD_PER_BAD = 9
ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
_ESCAPED = re.compile("[\udc80-\udcff]")


def _codec(charset: str | None) -> str | None:
    """Python's codec name for a declared charset (widened to its superset), or None when
    it is unknown."""
    if not charset:
        return None
    label = charset.strip().strip("\"'").split("*", 1)[0].lower()  # RFC 2231 "utf-8*de"
    try:
        info = codecs.lookup(_ALIASES.get(label, label))
    except (LookupError, ValueError):
        return None
    return _WIDENED.get(info.name, info.name)


@lru_cache(maxsize=64)
def _single_byte(name: str) -> bool:
    """A one-byte-per-character text codec (windows-1251, koi8-r, iso-8859-2 …)."""
    try:
        return len(bytes(range(256)).decode(name, "replace")) == 256
    except (LookupError, ValueError):
        return False


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


def _nearly(data: bytes, name: str) -> str | None:
    """`data` in charset `name` when all but a few bytes fit it, the misfits as U+FFFD: one
    damaged byte must not throw a whole UTF-8 part to the guesser."""
    try:
        text = data.decode(name, "surrogateescape")
    except (LookupError, ValueError):
        return None
    bad = len(_ESCAPED.findall(text))
    good = sum(1 for c in text if not c.isascii()) - bad
    if good < _GOOD_PER_BAD * bad:
        return None
    return _ESCAPED.sub("\ufffd", text)


def guess_decode(data: bytes, hint: str | None = None) -> str:
    """Decode bytes of unknown charset: UTF-8 if (nearly) valid, else `hint` (a charset the
    same mail declares elsewhere) if the bytes fit it, else the most plausible 8-bit one."""
    utf8 = _nearly(data, "utf-8")
    if utf8 is not None:
        return utf8
    name = _codec(hint)
    if name is not None and name not in ("utf-8", "ascii"):
        try:
            return data.decode(name)
        except (LookupError, ValueError):
            pass
    candidates = [data.decode(name, "replace") for name in _GUESSES]
    return max(candidates, key=_plausibility)  # max keeps the first of equal scores


def decode_bytes(data: bytes, charset: str | None, hint: str | None = None) -> str:
    """Decode with the declared charset when it fits the bytes, else guess (with `hint`).

    Text labelled with a one-byte charset that is valid UTF-8 with non-ASCII characters in it
    is UTF-8: no real text in windows-1252 or koi8-r is also valid UTF-8.
    """
    name = _codec(charset)
    if name is None or name == "ascii":
        return data.decode("ascii") if data.isascii() else guess_decode(data, hint)
    if _single_byte(name) and not data.isascii():
        try:
            return data.decode("utf-8")
        except ValueError:
            pass
    try:
        return data.decode(name)
    except (LookupError, ValueError):  # not a text codec, or bytes that do not fit
        pass
    return _nearly(data, name) or guess_decode(data, hint)


def repair(text: str, hint: str | None = None) -> str:
    """Re-decode the raw 8-bit bytes the email parser smuggles through as surrogates."""
    if not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    return guess_decode(text.encode("utf-8", "surrogateescape"), hint)


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


def decode_words(raw: str, hint: str | None = None) -> str:
    """Decode an unstructured header value with RFC 2047 encoded words in any charset.

    Adjacent words in the same charset are joined before decoding because mailers split a
    multi-byte character across two words. Raw 8-bit bytes are read in `hint` (the body's
    charset) when they are not UTF-8 and fit it, else guessed.
    """
    raw = _FOLD.sub("", raw)
    parts: list[str] = []
    pending: tuple[str, bytearray] | None = None
    pos = 0
    for match in ENCODED_WORD.finditer(raw):
        between = raw[pos : match.start()]
        charset, data = match[1], _word_bytes(match[2], match[3])
        if pending is not None and not between.strip():  # whitespace between words vanishes
            if pending[0].lower() == charset.lower():
                pending[1].extend(data)
            else:
                parts.append(decode_bytes(bytes(pending[1]), pending[0], hint))
                pending = (charset, bytearray(data))
        else:
            if pending is not None:
                parts.append(decode_bytes(bytes(pending[1]), pending[0], hint))
            parts.append(repair(between, hint))
            pending = (charset, bytearray(data))
        pos = match.end()
    if pending is not None:
        parts.append(decode_bytes(bytes(pending[1]), pending[0], hint))
    parts.append(repair(raw[pos:], hint))
    return " ".join("".join(parts).split())
