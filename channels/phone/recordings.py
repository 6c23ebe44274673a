"""Call recordings a PBX sends as a file (Bitrix24 `attachRecord` with FILE_CONTENT), kept in
`phone.recordings_dir` and served at `GET /recordings/<name>`.

The name is 128 random bits plus the extension: the link is the permission (like the
recording links PBXs hand out themselves), so it goes into the call activity and the rep's
Telegram card as it is. Nothing else in the directory is ever served.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from pathlib import Path

from aiohttp import web

from channels.phone.context import PhoneContext
from httpkit import json_error

RECORDINGS_PATH = "/recordings"
_NAME = re.compile(r"[0-9a-f]{32}\.(mp3|wav)")
_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav"}


def recording_url(ctx: PhoneContext, name: str) -> str:
    return f"{ctx.host.settings.http.public_url.rstrip('/')}{RECORDINGS_PATH}/{name}"


def _write(directory: Path, name: str, content: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f".{name}.part"
    with partial.open("wb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    partial.replace(directory / name)  # whole or not at all


async def store(directory: Path, extension: str, content: bytes) -> str:
    """Keep a recording; returns its name."""
    name = f"{secrets.token_hex(16)}.{extension}"
    await asyncio.to_thread(_write, directory, name, content)
    return name


async def discard(directory: Path, name: str) -> None:
    def _unlink() -> None:
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()

    await asyncio.to_thread(_unlink)


async def serve(ctx: PhoneContext, request: web.Request) -> web.StreamResponse:
    """GET /recordings/<name>: the file, for whoever has the link."""
    directory = ctx.settings.recordings_dir
    name = request.match_info["name"]
    found = _NAME.fullmatch(name)
    if directory is None or found is None:
        return json_error(404, "not_found", "no such recording")
    # A name that is not there: FileResponse answers 404 (the error middleware makes it JSON).
    return web.FileResponse(
        Path(directory) / name,
        headers={"Content-Type": _TYPES[found.group(1)], "Cache-Control": "private"},
    )
