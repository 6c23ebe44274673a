"""python-telegram-bot's HTTP client, with every answer from the Bot API cleaned on the way in.

A rep's note or a customer's message can hold characters no database stores (NUL, lone
surrogates, C0/C1 controls): `matching.text.clean_json` removes them, as for every other
channel. Cleaning the parsed JSON of every Bot API answer covers long polling (getUpdates)
and whatever else the bot reads back, in one place; webhook updates are cleaned by the
route before PTB sees them (the same rule, so cleaning twice changes nothing).
"""

from __future__ import annotations

from typing import Any

from telegram.request import HTTPXRequest

from matching.text import clean_json

# PTB's own defaults for the two clients an Application builds when given none.
POOL_SIZE = 256
GET_UPDATES_POOL_SIZE = 1  # one long poll at a time


class CleaningRequest(HTTPXRequest):
    """`HTTPXRequest` whose parsed answers pass `clean_json` (an unchanged answer is returned
    as the very same object, so the common case costs one scan of its JSON text)."""

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict[str, Any]:
        return clean_json(HTTPXRequest.parse_json_payload(payload))
