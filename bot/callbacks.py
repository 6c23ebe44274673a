"""Inline-button payloads: compact, versioned, at most 64 bytes (Telegram's limit).

Format: ``<version>:<action>:<ref>[:<arg>]``, e.g. ``1:tk:l42`` (take lead 42) or
``1:cb:l42:15`` (call back in 15 minutes). A ref is a record kind letter and an id (``l`` lead,
``d`` deal, ``a`` activity) or, for list pages and settings, a short plain token. Buttons from an
older format version decode to `StaleButton`, which the bot answers politely.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = "1"
MAX_BYTES = 64

# Actions. Two letters each: the payload budget is small and the set is closed.
TAKE = "tk"
STATUS_MENU = "sm"
STATUS = "st"
REASSIGN_MENU = "rm"
REASSIGN = "ra"
CONVERT_MENU = "cm"
CONVERT = "cv"
JUNK_MENU = "jm"
JUNK = "jk"
JUNK_TYPED = "jt"
EXCEPT_MENU = "xm"
EXCEPT = "xx"
CALLBACK_MENU = "bm"
CALLBACK = "cb"
DONE = "dn"
BACK = "bk"
OPEN = "op"
STAGE_MENU = "gm"
STAGE = "sg"
WIN = "dw"
LOSE = "dl"  # no arg: the reason menu; arg N: lost for crm.lost_reasons[N]
LOSE_TYPED = "lt"
REOPEN = "ro"
LEADS_PAGE = "pl"
DEALS_PAGE = "pd"
SETTING = "se"
REPLY = "rp"
HISTORY = "hi"  # arg: the page (0 is the newest)
AMOUNT = "am"  # asks for a deal's amount
SNOOZE = "sz"  # on a due call (activity ref); arg as CALLBACK's presets

ACTIONS = frozenset(
    {TAKE, STATUS_MENU, STATUS, REASSIGN_MENU, REASSIGN, CONVERT_MENU, CONVERT, JUNK_MENU, JUNK,
     JUNK_TYPED, EXCEPT_MENU, EXCEPT, CALLBACK_MENU, CALLBACK, DONE, BACK, OPEN, STAGE_MENU, STAGE,
     WIN, LOSE, LOSE_TYPED, REOPEN, LEADS_PAGE, DEALS_PAGE, SETTING, REPLY, HISTORY, AMOUNT,
     SNOOZE}
)  # fmt: skip
KINDS = {"l": "lead", "d": "deal", "a": "activity", "c": "contact"}
LETTERS = {v: k for k, v in KINDS.items()}


class StaleButton(ValueError):
    """The payload is not one this version of the bot understands."""


@dataclass(frozen=True, slots=True)
class Button:
    action: str
    ref: str
    arg: str = ""

    @property
    def record(self) -> tuple[str, int]:
        """(kind, id) of a record ref such as ``l42``; StaleButton when it is not one."""
        kind = KINDS.get(self.ref[:1])
        if kind is None or not self.ref[1:].isdigit():
            raise StaleButton(f"not a record reference: {self.ref!r}")
        return kind, int(self.ref[1:])


def ref(kind: str, ident: int) -> str:
    return f"{LETTERS[kind]}{ident}"


def encode(action: str, ref_: str, arg: str = "") -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown button action {action!r}")
    if ":" in ref_:
        raise ValueError("a button ref cannot contain ':'")
    data = f"{VERSION}:{action}:{ref_}" + (f":{arg}" if arg else "")
    if len(data.encode()) > MAX_BYTES:
        raise ValueError(f"button payload over {MAX_BYTES} bytes: {data!r}")
    return data


def decode(data: str | None) -> Button:
    parts = (data or "").split(":", 3)
    if len(parts) < 3 or parts[0] != VERSION or parts[1] not in ACTIONS:
        raise StaleButton(f"unknown button payload {data!r}")
    return Button(parts[1], parts[2], parts[3] if len(parts) == 4 else "")
