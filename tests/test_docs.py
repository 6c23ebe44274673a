"""The documentation holds together: links resolve, the README stays short, every setting is
documented on the page that owns its section, the README's fault table is the last run's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
EXAMPLE = ROOT / "config" / "leadbot.example.toml"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]

# The page(s) that own each section of the example config ("" = the top level); a key of the
# section must be named on one of them. A section missing here must be named on some page.
OWNERS = {
    "": ["operations/configuration.md", "operations/logging.md"],
    "http": ["operations/configuration.md"],
    "database": ["operations/configuration.md"],
    "redis": ["operations/configuration.md"],
    "queue": ["operations/queue.md", "operations/health.md"],
    "crm": ["operations/configuration.md"],
    "crm.lead_statuses": ["operations/configuration.md"],
    "crm.pipelines": ["operations/configuration.md"],
    "telegram": ["bot/guide.md"],
    "phone": ["channels/phone.md"],
    "mailboxes": ["channels/mail.md"],
    "mailboxes.smtp": ["channels/mail.md"],
    "forms": ["channels/webforms.md"],
    "whatsapp": ["channels/whatsapp.md"],
}

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code: where links are links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces to dashes, -1 for repeats."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", FENCE.sub("", page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(page.read_text())) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_an_existing_file_and_heading(page: Path) -> None:
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading #{anchor}")
    assert broken == []


def test_the_checker_sees_links_and_anchors() -> None:
    """Guards the two tests above against passing because they found nothing to check."""
    assert "docs/operations/configuration.md" in _links(README)
    assert "start-up" in _anchors(DOCS / "operations" / "health.md")
    assert "differences-from-bitrix24" in _anchors(DOCS / "decisions.md")


def test_readme_is_short_and_starts_a_fresh_machine() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 260
    assert "make run" in text and "make test" in text


def test_readme_command_list_names_every_command() -> None:
    from leadbot.cli import build_parser

    usage = re.search(r"\{([a-z,-]+)\}", build_parser().format_usage())
    assert usage is not None
    commands = usage.group(1).split(",")
    assert "import-csv" in commands and "dead" in commands
    text = README.read_text()
    assert [c for c in commands if f"leadbot {c}" not in text] == []


def _example_keys() -> dict[str, set[str]]:
    """Every key of the example config (commented-out ones too), by section."""
    keys: dict[str, set[str]] = {}
    section = ""
    for line in EXAMPLE.read_text().splitlines():
        head = re.match(r"^#?\s*\[\[?([a-z_.]+)\]\]?\s*$", line)
        if head:
            section = head.group(1)
            continue
        key = re.match(r"^#?\s*([a-z_]+)\s*=", line)
        if key:
            keys.setdefault(section, set()).add(key.group(1))
            if key.group(1) == "stages":  # inline tables of a pipeline's stages
                keys.setdefault(section, set()).update({"id", "name", "semantic"})
    return keys


def test_every_config_key_is_documented_on_the_page_that_owns_its_section() -> None:
    keys = _example_keys()
    assert {"http", "telegram", "mailboxes", "forms"} <= set(keys)
    all_docs = " ".join(p.read_text() for p in DOCS.rglob("*.md"))
    missing = []
    for section, names in keys.items():
        owners = OWNERS.get(section)
        if owners is None:
            if section.split(".")[-1] not in all_docs:
                missing.append(f"[{section}]: no docs page names it; add it to OWNERS")
            continue
        text = " ".join((DOCS / page).read_text() for page in owners)
        for name in sorted(names):
            if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text):
                missing.append(f"{section}.{name} (in {' or '.join(owners)})")
    assert missing == []


def _fault_rows(text: str) -> dict[str, list[str]]:
    """Fault table rows by scenario name (without the letter and backticks) → first 5 figures."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 6 and re.fullmatch(r"\d+", cells[1]):
            name = re.sub(r"^[a-z]\. ", "", cells[0]).replace("`", "")
            rows[name] = cells[1:6]
    return rows


def test_readme_fault_table_has_the_figures_of_the_last_chaos_run() -> None:
    measured = _fault_rows((DOCS / "operations" / "reliability.md").read_text())
    listed = _fault_rows(README.read_text().partition("## Reliability")[2])
    assert len(measured) >= 6
    assert {name: listed.get(name) for name in measured} == measured
