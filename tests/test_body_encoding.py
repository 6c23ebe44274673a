"""Compressed request bodies over real HTTP: every route that reads a body answers at once,
400 with a JSON reason for one that does not decode, 413 for one that inflates past the
app's limit (issue 12: a truncated deflate body once left the service silent for good)."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import pytest

from channels.phone.signatures import sign_generic
from leadbot.wiring import COMPONENTS
from tests.fakes.telegram_api import FakeTelegram
from tests.test_input_fuzz import BITRIX_TOKEN, PHONE_SECRET, all_sections, tg  # noqa: F401

FORM = "application/x-www-form-urlencoded"
CALL = json.dumps(
    {"event": "call.missed", "call_id": "enc-1", "direction": "incoming", "from": "+4930123456"}
).encode()
# (path, content type, an acceptable body, whether it is signed as a generic call event)
ROUTES = {
    "form": ("/forms/contact", FORM, b"name=Kunde&phone=%2B49301234567&message=hallo", False),
    "webhook": ("/hooks/calls", "application/json", CALL, True),
    "bitrix": (
        f"/rest/1/{BITRIX_TOKEN}/telephony.externalcall.register",
        "application/json",
        b'{"USER_PHONE_INNER": "101", "PHONE_NUMBER": "+4930123456", "TYPE": 2}',
        False,
    ),
}
# Every test on each of the three routes (SQLite: the body handling is the same on both).
pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite"]),
    pytest.mark.parametrize("route", list(ROUTES)),
]


async def post(
    port: int, path: str, body: bytes, headers: dict[str, str], *, split: bool = True
) -> tuple[int, dict[str, Any], float]:
    """POST over a raw socket; with `split` the head goes first and the body after a pause,
    so the route is already waiting for the body (how the hang showed). Status, JSON answer
    and seconds taken; an answer later than 20 s fails the test."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"POST {path} HTTP/1.1", "Host: leadbot", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in {"Content-Length": str(len(body)), **headers}.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    started = time.monotonic()
    try:
        writer.write(head if split else head + body)
        if split:
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.write(body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=20)
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    payload = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(payload), time.monotonic() - started


def headers_for(route: str, body: bytes, coding: str | None) -> dict[str, str]:
    _, ctype, _, signed = ROUTES[route]
    headers = {"Content-Type": ctype}
    if coding is not None:
        headers["Content-Encoding"] = coding
    if signed:  # the signature covers the body the route reads: the decoded one
        headers["X-Leadbot-Signature"] = sign_generic(PHONE_SECRET, int(time.time()), body)
    return headers


def gzip_bomb(inflated: int) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    return (
        b"".join(squeeze.compress(zeros) for _ in range(inflated // len(zeros))) + squeeze.flush()
    )


@pytest.fixture
async def service(tg: FakeTelegram, start_service: Any) -> Any:  # noqa: F811
    service = await start_service(components=list(COMPONENTS), **all_sections(tg))
    await service.crm.reps.add("Rita", extension="101")
    for comp in service.components:
        if getattr(comp, "ctx", None) is not None:
            await comp.ctx.refresh_directory()
    return service


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "identity": lambda b: b,
}


async def test_compressed_bodies_are_read_and_broken_ones_refused_at_once(
    service: Any, route: str
) -> None:
    path, _, body, _ = ROUTES[route]
    plain, answer, _ = await post(service.port, path, body, headers_for(route, body, None))
    assert plain < 300, answer
    for coding, encode in ENCODERS.items():
        status, answer, _ = await post(
            service.port, path, encode(body), headers_for(route, body, coding)
        )
        # Read as the plain body was (the call webhook knows it again: a duplicate).
        assert status < 300 and "error" not in answer, (coding, answer)

    packed = zlib.compress(body)
    broken = {
        "deflate that ends early": (packed[: len(packed) // 2], "deflate"),
        "deflate of one byte": (b"x", "deflate"),
        "junk as deflate": (b"this is not deflate at all", "deflate"),
        "gzip that ends early": (gzip.compress(body)[:-12], "gzip"),
        "gzip with trailing junk": (gzip.compress(body) + b"junk", "gzip"),
    }
    for what, (data, coding) in broken.items():
        for split in (True, False):
            status, answer, took = await post(
                service.port, path, data, headers_for(route, body, coding), split=split
            )
            assert (status, answer["error"]) == (400, "bad_encoding"), (what, answer)
            assert answer["detail"] and took < 10, (what, took)

    for coding in ("br", "junk", "gzip, zstd"):
        status, answer, _ = await post(
            service.port, path, gzip.compress(body), headers_for(route, body, coding)
        )
        assert (status, answer["error"]) == (415, "unsupported_encoding"), (coding, answer)


async def test_a_gzip_bomb_is_refused_quickly_without_inflating_it(
    service: Any, route: str
) -> None:
    path, _, body, _ = ROUTES[route]
    bomb = gzip_bomb(256 * 1024 * 1024)  # about 250 KB on the wire
    assert len(bomb) < 1024 * 1024
    tracemalloc.start()
    try:
        status, answer, took = await post(
            service.port, path, bomb, headers_for(route, body, "gzip")
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (status, answer["error"]) == (413, "too_large"), answer
    assert took < 10, took
    assert peak < 32 * 1024 * 1024, peak  # the service's limit is 2 MiB, the bomb 256 MiB
