"""Hot paths read an enum member's value as `str(member)` or `f"{member}"` (the `.value`
property costs Python-level calls): that is the value only for StrEnums."""

from __future__ import annotations

from enum import Enum

import pytest

from matching.channels import Channel
from matching.event import Direction, RegisterMode
from matching.model import ClientKind, CommKind, Outcome


@pytest.mark.parametrize("kind", [Channel, Direction, RegisterMode, CommKind, ClientKind, Outcome])
def test_a_member_s_text_is_its_value(kind: type[Enum]) -> None:
    for member in kind:
        assert type(str(member)) is str
        logged = "%s" % member  # noqa: UP031 - as a log record formats it
        assert str(member) == f"{member}" == logged == member.value
