"""The Bitrix24 methods beyond telephony calls, bound to the webhook's user: the records
(bitrix_crm), activities and reference lists (bitrix_catalog), users, system methods and lines
(bitrix_users). Each runs as the rep whose id is the webhook's user id, with that rep's rights;
the CRM's refusals become Bitrix24 error bodies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from channels.phone.bitrix_catalog import BitrixCatalog
from channels.phone.bitrix_crm import BitrixCrm, Process
from channels.phone.bitrix_fields import Printer
from channels.phone.bitrix_params import CRM_METHODS, BitrixError, invalid_credentials
from channels.phone.bitrix_users import BitrixUsers
from crm.dto import Actor
from crm.errors import CrmError, NotFound
from crm.facade import Crm

UserMethod = Callable[[dict[str, Any], Actor], Awaitable[Any]]
# What the service calls: (params, the webhook's user id as in the URL) → result.
Method = Callable[[dict[str, Any], str], Awaitable[Any]]


async def webhook_actor(crm: Crm, user: str) -> Actor:
    """The webhook's user: an active rep, acting with that rep's role."""
    try:
        rep = await crm.reps.get(int(user))
    except (NotFound, ValueError):
        rep = None
    if rep is None or not rep.active:
        raise invalid_credentials()
    return Actor(rep.id, rep.role)


def as_user(crm: Crm, name: str, method: UserMethod) -> Method:
    # Line methods answer ERROR_CORE like Bitrix24's telephony; CRM methods an empty code.
    code = "ERROR_CORE" if name.startswith("telephony.") else ""

    async def run(params: dict[str, Any], user: str) -> Any:
        actor = await webhook_actor(crm, user)
        try:
            return await method(params, actor)
        except NotFound as err:
            raise BitrixError(code, f"Not found: {err}") from None
        except CrmError as err:
            raise BitrixError(code, str(err)) from None

    return run


def user_methods(
    crm: Crm, process: Process, printer: Callable[[], Printer], served: Callable[[], Iterable[str]]
) -> dict[str, Method]:
    """Every method of CRM_METHODS by its normalized name."""
    records = BitrixCrm(crm, process, printer)
    users = BitrixUsers(crm, served, crm.config.timezone)
    methods: dict[str, Method] = {}
    for table in (records.methods(), BitrixCatalog(records).methods(), users.methods()):
        for name, method in table.items():
            methods[name] = as_user(crm, name, method)
    assert set(methods) == CRM_METHODS, set(methods) ^ CRM_METHODS
    return methods
