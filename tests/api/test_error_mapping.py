"""CRM errors become the matching HTTP status with the service's sentence as detail."""

from __future__ import annotations

import json

import pytest

from crm.errors import Conflict, CrmError, Forbidden, InvalidInput, NotFound
from leadbot.api.errors import from_crm_error


class _Narrower(NotFound):
    """A subclass the mapping has never heard of still maps like its parent."""


@pytest.mark.parametrize(
    ("err", "status", "code"),
    [
        (NotFound("lead #9 does not exist"), 404, "not_found"),
        (_Narrower("gone"), 404, "not_found"),
        (Forbidden("lead #9 belongs to another rep"), 403, "forbidden"),
        (InvalidInput("limit must be between 1 and 200"), 400, "invalid"),
        (Conflict("lead #9 is already closed"), 409, "conflict"),
        (CrmError("something else"), 400, "error"),
    ],
)
def test_crm_errors_map_to_http(err: CrmError, status: int, code: str) -> None:
    response = from_crm_error(err).response()
    assert response.status == status
    assert response.text is not None
    assert json.loads(response.text) == {"error": code, "detail": str(err)}
