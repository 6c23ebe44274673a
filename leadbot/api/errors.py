"""API errors: one exception carrying the HTTP status, and the mapping of CRM errors."""

from __future__ import annotations

from aiohttp import web

from crm.errors import Conflict, CrmError, Forbidden, InvalidInput, NotFound
from crm.services.idempotency import KeyReused
from httpkit import json_error

CRM_STATUS: dict[type[CrmError], int] = {
    NotFound: 404,
    Forbidden: 403,
    InvalidInput: 400,
    Conflict: 409,
    KeyReused: 422,
}


class ApiError(Exception):
    """A request the API refuses; becomes `{"error": code, "detail": detail}`."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> web.Response:
        resp = json_error(self.status, self.code, self.detail)
        resp.headers.update(self.headers)
        return resp


def bad_request(detail: str) -> ApiError:
    return ApiError(400, "bad_request", detail)


def from_crm_error(err: CrmError) -> ApiError:
    for cls in type(err).__mro__:
        if cls in CRM_STATUS:
            return ApiError(CRM_STATUS[cls], err.code, str(err))
    return ApiError(400, err.code, str(err))
