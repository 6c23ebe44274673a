"""Text of a mail body: HTML to text, the customer's own words, a short preview, phones."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import html2text
import phonenumbers

PREVIEW_LIMIT = 500
MAX_HINT_PHONES = 5

# A line that starts the quoted original: everything from here on is not the customer's text.
_QUOTE_HEADERS = (
    re.compile(r"^On .+ wrote:$", re.I | re.S),
    re.compile(r"^Am .+ schrieb .*:$", re.I | re.S),
    re.compile(r".+ (написал|написала|написал\(а\)|пишет):$", re.I | re.S),
    re.compile(
        r"^-{2,}\s*(Original Message|Ursprüngliche Nachricht|Исходное сообщение)\s*-{2,}$", re.I
    ),
)
# Outlook's quoted header block: "From:" followed by "Sent:" a few lines below.
_OUTLOOK_FROM = re.compile(r"^(From|Von|От|De):\s", re.I)
_OUTLOOK_SENT = re.compile(r"^(Sent|Gesendet|Отправлено|Date|Datum|Envoyé):\s", re.I)
_RULE = re.compile(r"^[_\-=]{10,}$")
_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>])")
_BLANK_RUNS = re.compile(r"\n{3,}")


class _TextCollector(HTMLParser):
    """Stdlib fallback for HTML html2text cannot digest: visible text, blocks on new lines."""

    _BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "table", "blockquote"})
    _HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCKS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCKS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    """Readable plain text of an HTML body; quoted <blockquote>s come out as "> " lines."""
    converter = html2text.HTML2Text()
    converter.body_width = 0
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.ignore_links = True
    converter.ignore_tables = True
    converter.unicode_snob = True
    try:
        text = _MD_ESCAPE.sub(r"\1", converter.handle(html))
    except Exception:  # html2text has tripped over odd markup before; the stdlib never does
        collector = _TextCollector()
        collector.feed(html)
        collector.close()
        text = "".join(collector.chunks)
    return normalize(text)


def normalize(text: str) -> str:
    """Unix newlines, plain spaces, no trailing blanks or NULs, at most one empty line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "").replace("\xa0", " ")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip("\n")


def _quote_starts(lines: list[str], index: int) -> bool:
    line = lines[index].strip()
    # Gmail wraps a long "On … wrote:" over two lines.
    joined = f"{line} {lines[index + 1].strip()}" if index + 1 < len(lines) else line
    if any(p.match(line) or p.match(joined) for p in _QUOTE_HEADERS):
        return True
    if _OUTLOOK_FROM.match(line):
        return any(_OUTLOOK_SENT.match(nxt.strip()) for nxt in lines[index + 1 : index + 4])
    return False


def own_text(text: str) -> str:
    """The customer's own words: quoted ("> ") lines and the quoted original removed.

    The signature stays: its phone numbers are the customer's, unlike those in the quote,
    which are usually ours.
    """
    lines = text.split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _quote_starts(lines, index):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    while kept and (not kept[-1].strip() or _RULE.match(kept[-1].strip())):
        kept.pop()  # blank lines and the "_____" rule Outlook puts above the quote
    return normalize("\n".join(kept))


def without_signature(text: str) -> str:
    """Cut at the standard "-- " signature delimiter."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line in ("-- ", "--"):
            return normalize("\n".join(lines[:index]))
    return text


def preview(text: str, limit: int = PREVIEW_LIMIT) -> str:
    """The customer's own words without signature, cut at a word boundary near `limit`."""
    return preview_of_own(own_text(text), limit)


def preview_of_own(own: str, limit: int = PREVIEW_LIMIT) -> str:
    """`preview` of a text that is already `own_text`."""
    short = without_signature(own)
    if len(short) <= limit:
        return short
    cut = short[:limit].rsplit(None, 1)[0] if " " in short[:limit] else short[:limit]
    return cut.rstrip(" ,.;:-") + " …"


def find_phones(text: str, region: str | None) -> tuple[str, ...]:
    """Phone-like strings in the customer's own text, raw and de-duplicated.

    Without a region only numbers in international form are found.
    """
    return phones_in_own(own_text(text), region)


def phones_in_own(own: str, region: str | None) -> tuple[str, ...]:
    """`find_phones` in a text that is already `own_text`."""
    found: list[str] = []
    for match in phonenumbers.PhoneNumberMatcher(own, region):
        if match.raw_string not in found:
            found.append(match.raw_string)
        if len(found) == MAX_HINT_PHONES:
            break
    return tuple(found)
