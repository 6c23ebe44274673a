"""An event's log-row payload (PostgreSQL) as JSON text, encoded from the event in one pass.

`InboundEvent.to_json` builds a dict of the event's fields, in their order, which the bulk
write then encodes (msgspec): two passes over the event and a dict of twenty-one keys per
event. msgspec encodes the dataclass itself to the same text, but for one value: a
timestamp at UTC offset zero, which it writes with "Z" where `isoformat` writes "+00:00".
`payload_text` puts the "+00:00" back, so the stored text is the one `to_json` gave.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

import msgspec

from matching.event import InboundEvent

_ENCODE = msgspec.json.Encoder().encode
_ZERO = timedelta(0)
# `occurred_at` is followed by `direction` (checked below). A quote inside a string value
# is escaped in JSON, so this sequence is never part of one.
_AT_Z = b'Z","direction":"'
_AT_ZERO = b'+00:00","direction":"'

_NAMES = [f.name for f in fields(InboundEvent)]
if _NAMES[_NAMES.index("occurred_at") + 1] != "direction":
    raise TypeError("InboundEvent.direction must follow occurred_at (see crm.intake.payload)")


def payload_text(event: InboundEvent) -> msgspec.Raw:
    """The JSON text of `event.to_json()`, for a JSON column of the bulk writes."""
    text = _ENCODE(event)
    if event.occurred_at.utcoffset() == _ZERO:
        text = text.replace(_AT_Z, _AT_ZERO, 1)
    return msgspec.Raw(text)
