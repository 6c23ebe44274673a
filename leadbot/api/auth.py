"""Bearer-token authentication (RFC 6750) against the hashed tokens in the database."""

from __future__ import annotations

import re

from aiohttp import web

from crm.services.tokens import Caller, Tokens
from leadbot.api.errors import ApiError

REALM = 'Bearer realm="leadbot"'
# Tokens are printable ASCII without spaces; anything else cannot be one of ours.
_TOKEN = re.compile(r"[\x21-\x7e]{1,200}")


def _refuse(detail: str, *, invalid: bool) -> ApiError:
    challenge = f'{REALM}, error="invalid_token"' if invalid else REALM
    return ApiError(401, "unauthorized", detail, {"WWW-Authenticate": challenge})


async def authenticate(request: web.Request, tokens: Tokens) -> Caller:
    header = request.headers.get("Authorization")
    if header is None:
        raise _refuse(
            "missing bearer token: send 'Authorization: Bearer <token>' "
            "(create one with `leadbot token create <name>`)",
            invalid=False,
        )
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
        raise _refuse("malformed Authorization header: expected 'Bearer <token>'", invalid=True)
    caller = await tokens.identify(token)
    if caller is None:
        raise _refuse("the token is unknown or revoked (or its rep deactivated)", invalid=True)
    return caller
