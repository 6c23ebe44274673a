"""`[http] event_loop`: serve and worker run on uvloop unless it is turned off."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadbot.loop import run, running_loop_name
from leadbot.settings import ConfigError, Settings, load_settings


async def _name() -> str:
    return running_loop_name()


def test_uvloop_is_the_default_and_asyncio_turns_it_off() -> None:
    assert Settings().http.event_loop == "uvloop"
    assert run(_name(), "uvloop") == "uvloop"
    assert run(_name(), "asyncio") == "asyncio"


def test_an_unknown_event_loop_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "leadbot.toml"
    path.write_text('[http]\nevent_loop = "trio"\n')
    with pytest.raises(ConfigError, match="event_loop"):
        load_settings(path)
