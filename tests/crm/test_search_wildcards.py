"""Name search takes the query literally: LIKE's wildcards and its escape character match
only themselves (`/find %%` must not list every record)."""

from __future__ import annotations

import pytest

from crm.facade import Crm
from crm.services.leads import LeadInput
from crm.services.records import ContactInput


@pytest.fixture
async def names(crm: Crm) -> dict[str, int]:
    ids = {}
    for name in ("Anna Meier", "Bernd 100% Sicher", "Carla_Nord", "Dora\\Ost", "Emil Xy"):
        ids[name] = (await crm.records.create_contact(ContactInput(name=name))).id
    ids["lead"] = (await crm.leads.create(LeadInput(title="Rabatt 50%", name="Fritz"))).id
    return ids


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("%%", []),  # before escaping: every record
        ("0%", ["Bernd 100% Sicher"]),
        ("__", []),
        ("a_n", ["Carla_Nord"]),
        ("a\\", ["Dora\\Ost"]),
        ("a\\o", ["Dora\\Ost"]),
        ("meier", ["Anna Meier"]),
    ],
)
async def test_name_search_takes_wildcards_literally(
    crm: Crm, names: dict[str, int], query: str, expected: list[str]
) -> None:
    found = await crm.search.find(query)
    assert sorted(c.id for c in found.contacts) == sorted(names[n] for n in expected)


async def test_a_percent_sign_finds_the_lead_that_has_one(crm: Crm, names: dict[str, int]) -> None:
    found = await crm.search.find("%%")
    assert [lead.id for lead in found.leads] == []  # "Rabatt 50%" has one % only
    assert [lead.id for lead in (await crm.search.find("0%")).leads] == [names["lead"]]
