"""Amounts as reps type them: forgiving about grouping and marks, polite about the rest."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm.errors import InvalidInput
from crm.money import parse_money


@pytest.mark.parametrize(
    ("typed", "amount", "currency"),
    [
        ("1 200,50 EUR", "1200.50", "EUR"),
        ("$300", "300", "USD"),
        ("300 €", "300", "EUR"),
        ("1.200", "1200", "CHF"),  # a lone mark before three digits groups thousands
        ("1,200.50 usd", "1200.50", "USD"),
        ("1.200.000,5", "1200000.5", "CHF"),
        ("12,5", "12.5", "CHF"),
        ("CHF 99.90", "99.90", "CHF"),
        ("4500", "4500", "CHF"),
        ("12 euros", "12", "EUR"),
        ("1'250 Fr.", "1250", "CHF"),
        ("US$ 19.99", "19.99", "USD"),
    ],
)
def test_amounts_as_typed(typed: str, amount: str, currency: str) -> None:
    assert parse_money(typed, "CHF") == (Decimal(amount), currency)


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("a lot", "I did not understand “a lot” as an amount; e.g. 1 200,50 EUR"),
        ("12 XYZ", "I do not know the currency “XYZ”"),
        ("-5 EUR", "an amount cannot be negative"),
        ("300 EUR USD", "names more than one currency"),
        ("1.2345", "two decimals at most"),
        ("1,234,5", "I did not understand “1,234,5” as an amount"),
        ("12 13", "I did not understand"),
        ("99999999999999999", "too large"),
    ],
)
def test_what_is_not_an_amount_is_said_politely(typed: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says.replace("$", r"\$").replace(".", r"\.")):
        parse_money(typed, "EUR")


@given(st.text(max_size=40))
def test_any_text_is_an_amount_or_a_sentence(text: str) -> None:
    try:
        amount, currency = parse_money(text, "EUR")
    except InvalidInput:
        return
    assert amount >= 0 and len(currency) == 3
