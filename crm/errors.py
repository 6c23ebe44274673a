"""Errors the CRM services raise; adapters turn them into HTTP codes or polite bot replies."""


class CrmError(Exception):
    """Base class; `str(err)` is a sentence fit to show a user."""

    code = "error"


class NotFound(CrmError):
    code = "not_found"


class Forbidden(CrmError):
    code = "forbidden"


class InvalidInput(CrmError):
    code = "invalid"


class Conflict(CrmError):
    """The request does not fit the record's current state (e.g. converting a junk lead)."""

    code = "conflict"
