"""Amounts as reps type them: "1 200,50 EUR", "$300", "300 €", "1.200", "1,200.50 usd".

Forgiving about grouping and the decimal mark (the last of "." and "," before at most two
digits is the mark; a lone separator before three digits groups thousands), strict about
the rest: one number, at most one currency (an ISO 4217 code Babel knows, or a common
symbol), not negative, two decimals at most.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from functools import cache

from babel.numbers import list_currencies

from crm.errors import InvalidInput

EXAMPLES = "e.g. 1 200,50 EUR, $300 or 4500"
MAX_AMOUNT = Decimal("9999999999999999.99")  # Numeric(18, 2)
SYMBOLS = {
    "€": "EUR",
    "$": "USD",
    "us$": "USD",
    "£": "GBP",
    "¥": "JPY",
    "₽": "RUB",
    "₴": "UAH",
    "₹": "INR",
    "₺": "TRY",
    "₪": "ILS",
    "zł": "PLN",
    "kč": "CZK",
    "fr.": "CHF",
    "euro": "EUR",
    "euros": "EUR",
    "dollar": "USD",
    "dollars": "USD",
}
_CURRENCY = re.compile(r"us\$|[€$£¥₽₴₹₺₪]|zł|kč|fr\.|[a-z]{3,7}", re.IGNORECASE)
_NUMBER = re.compile(r"\d[\d.,' \u00a0\u202f]*")


@cache
def _codes() -> frozenset[str]:
    return frozenset(list_currencies())


def currency_code(text: str) -> str | None:
    """An ISO 4217 code for a code or symbol as typed; None when it is not one."""
    low = text.strip().lower()
    code = SYMBOLS.get(low) or low.upper()
    return code if code in _codes() else None


def _grouped(digits: str) -> str:
    """Digits grouped by one kind of mark in threes ("1.200.000"), without the marks."""
    if (
        not re.fullmatch(r"\d{1,3}([.,]\d{3})+|\d+", digits)
        or len(set(re.sub(r"\d", "", digits))) > 1
    ):
        raise ValueError(digits)
    return re.sub(r"[.,]", "", digits)


def _decimal(number: str) -> Decimal:
    parts = re.split(r"[' \u00a0\u202f]+", number)
    if len(parts) > 1 and not (
        re.fullmatch(r"\d{1,3}", parts[0]) and all(re.match(r"\d{3}(?!\d)", p) for p in parts[1:])
    ):
        raise ValueError(number)  # spaces group thousands: "1 200", not "12 13"
    digits = "".join(parts)
    marks = [i for i, ch in enumerate(digits) if ch in ".,"]
    if marks:
        last = marks[-1]
        tail = digits[last + 1 :]
        single_kind = len({digits[i] for i in marks}) == 1
        if single_kind and (len(marks) > 1 or len(tail) == 3):
            digits = _grouped(digits)  # only thousands grouping
        else:
            digits = f"{_grouped(digits[:last])}.{tail}"
    if re.fullmatch(r"\d+\.\d{3,}", digits):
        raise InvalidInput(f"an amount has two decimals at most, not “{number[:40]}”")
    if not re.fullmatch(r"\d+(\.\d{1,2})?", digits):
        raise ValueError(number)
    return Decimal(digits)


def parse_money(text: str, default_currency: str) -> tuple[Decimal, str]:
    """(amount, ISO currency) from what a rep typed; InvalidInput with a polite sentence."""
    raw = " ".join(text.split())
    shown = raw[:40]
    if raw.startswith("-") or "-" in raw.replace(" ", "")[:2]:
        raise InvalidInput("an amount cannot be negative")
    if not re.search(r"\d", raw):
        raise InvalidInput(f"I did not understand “{shown}” as an amount; {EXAMPLES}")
    currencies = _CURRENCY.findall(raw)
    if len(currencies) > 1:
        raise InvalidInput(f"“{shown}” names more than one currency; write one, {EXAMPLES}")
    currency = default_currency
    rest = raw
    if currencies:
        found = currency_code(currencies[0])
        if found is None:
            raise InvalidInput(
                f"I do not know the currency “{currencies[0][:10]}”; use a code such as "
                f"EUR, USD or CHF, {EXAMPLES}"
            )
        currency, rest = found, _CURRENCY.sub(" ", raw, count=1)
    numbers = _NUMBER.findall(rest)
    leftover = _NUMBER.sub("", rest).strip()
    if len(numbers) != 1 or leftover:
        raise InvalidInput(f"I did not understand “{shown}” as an amount; {EXAMPLES}")
    try:
        amount = _decimal(numbers[0].strip())
    except (ValueError, InvalidOperation):
        raise InvalidInput(f"I did not understand “{shown}” as an amount; {EXAMPLES}") from None
    if amount > MAX_AMOUNT:
        raise InvalidInput("that amount is too large")
    return amount, currency
