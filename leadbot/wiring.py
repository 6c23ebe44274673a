"""Which components a full service runs; each factory returns None when not configured."""

from __future__ import annotations

from typing import TYPE_CHECKING

from leadbot.api import api_component

if TYPE_CHECKING:
    from leadbot.app import ComponentFactory

COMPONENTS: list[ComponentFactory] = [api_component]
