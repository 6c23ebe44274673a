"""The route table of /api/v1: each route declared once, with its parameters, response
schema and handler. The server and the OpenAPI document are both built from it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from crm.dto import (
    ActivityView,
    Actor,
    CompanyView,
    ContactView,
    DealView,
    DuplicateHits,
    EventView,
    LeadView,
    TimelineView,
)
from crm.facade import Crm
from crm.services.listing import MAX_LIMIT, ListFilter
from leadbot.api.bodies import Body
from leadbot.api.errors import bad_request
from leadbot.api.params import INT32_MAX, Param
from leadbot.api.serialize import ref, to_json
from matching.event import Channel
from matching.model import Outcome
from matching.normalize import is_region

PREFIX = "/api/v1"

Args = dict[str, Any]  # the checked parameters, plus "actor" and (write routes) "body"
Handler = Callable[[Crm, Args], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Answer:
    """A handler's result with a status other than the route's usual one."""

    status: int
    body: Any


@dataclass(frozen=True, slots=True)
class Route:
    path: str  # below PREFIX, in OpenAPI / aiohttp template syntax
    operation_id: str
    summary: str
    response: dict[str, Any]  # JSON schema of the 200 body
    handler: Handler
    params: tuple[Param, ...] = ()
    public: bool = False
    one_of: tuple[str, ...] = ()  # query parameters of which at least one must be given
    method: str = "GET"
    body: type[Body] | None = None  # the JSON body a write route takes
    scope: str = "read"  # what the token must be allowed
    status: int = 200  # of a success
    refusals: tuple[int, ...] = ()  # error statuses beyond the ones every route has

    @property
    def full_path(self) -> str:
        return PREFIX + self.path

    @property
    def can_404(self) -> bool:
        return any(p.location == "path" for p in self.params)


ID = Param(
    "id", "integer", "Record id.", location="path", required=True, minimum=1, maximum=INT32_MAX
)
PAGING = (
    Param("offset", "integer", "Items to skip.", minimum=0, maximum=INT32_MAX, default=0),
    Param("limit", "integer", "Items per page.", minimum=1, maximum=MAX_LIMIT, default=50),
)
RECORD_FILTERS = (
    Param("status", "string", "Status code (leads) or stage code (deals)."),
    Param("semantic", "string", "Status group.", enum=("process", "success", "failure")),
    Param("source", "string", "Source code, e.g. CALL, EMAIL, WEB."),
    Param("responsible_id", "integer", "Responsible rep id.", minimum=1, maximum=INT32_MAX),
    Param("unassigned", "boolean", "Only records nobody is responsible for."),
    Param("is_return_customer", "boolean", "Repeat lead / repeat deal flag."),
    Param("created_from", "date-time", "Created at or after (ISO-8601 with timezone)."),
    Param("created_to", "date-time", "Created before (ISO-8601 with timezone)."),
)
DEAL_FILTERS = (
    Param("pipeline", "string", "Pipeline code."),
    Param("is_repeated_approach", "boolean", "Repeated inquiry flag."),
)
_FILTER_FIELDS = {f.name for f in fields(ListFilter)}


def page_schema(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": item},
            "total": {"type": "integer", "minimum": 0},
            "offset": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer", "minimum": 1},
        },
        "required": ["items", "total", "offset", "limit"],
    }


def _page(items: Sequence[Any], total: int, args: Args) -> dict[str, Any]:
    return {
        "items": to_json(list(items)),
        "total": total,
        "offset": args["offset"],
        "limit": args["limit"],
    }


def _list_filter(args: Args) -> ListFilter:
    return ListFilter(**{k: v for k, v in args.items() if k in _FILTER_FIELDS})


async def _list_leads(crm: Crm, args: Args) -> Any:
    return _page(*await crm.leads.page(_list_filter(args), args["actor"]), args)


async def _list_deals(crm: Crm, args: Args) -> Any:
    return _page(*await crm.deals.page(_list_filter(args), args["actor"]), args)


async def _list_contacts(crm: Crm, args: Args) -> Any:
    page = await crm.records.list_contacts(
        offset=args["offset"], limit=args["limit"], actor=args["actor"]
    )
    return _page(*page, args)


async def _list_companies(crm: Crm, args: Args) -> Any:
    page = await crm.records.list_companies(
        offset=args["offset"], limit=args["limit"], actor=args["actor"]
    )
    return _page(*page, args)


async def _get_lead(crm: Crm, args: Args) -> Any:
    return to_json(await crm.leads.get(args["id"], args["actor"]))


async def _get_deal(crm: Crm, args: Args) -> Any:
    return to_json(await crm.deals.get(args["id"], args["actor"]))


async def _get_contact(crm: Crm, args: Args) -> Any:
    return to_json(await crm.records.get_contact(args["id"], args["actor"]))


async def _get_company(crm: Crm, args: Args) -> Any:
    return to_json(await crm.records.get_company(args["id"], args["actor"]))


async def _list_events(crm: Crm, args: Args) -> Any:
    page = await crm.events.page(
        channel=args.get("channel"),
        outcome=args.get("outcome"),
        offset=args["offset"],
        limit=args["limit"],
    )
    return _page(*page, args)


async def _duplicates(crm: Crm, args: Args) -> Any:
    region = args.get("region")
    if region is not None and not is_region(region):
        raise bad_request(f"unknown region {region!r}: give an ISO 3166 code like AT")
    hits = await crm.search.duplicates(args["phone"], args["email"], args["actor"], region=region)
    return to_json(hits)


Pager = Callable[[Crm, str, int, Actor, int, int], Awaitable[tuple[Sequence[Any], int]]]


def _history(owner_type: str, load: Pager) -> Handler:
    """A page of a record's history, paged by the database."""

    async def handler(crm: Crm, args: Args) -> Any:
        page = await load(crm, owner_type, args["id"], args["actor"], args["offset"], args["limit"])
        return _page(*page, args)

    return handler


def _activities_page(crm: Crm, *args: Any) -> Awaitable[tuple[Sequence[Any], int]]:
    return crm.activities.page_of_record(*args)


def _timeline_page(crm: Crm, *args: Any) -> Awaitable[tuple[Sequence[Any], int]]:
    return crm.activities.timeline_page(*args)


def _record_routes(
    plural: str, one: str, view: type, lister: Handler, getter: Handler, filters: tuple[Param, ...]
) -> list[Route]:
    """List, single record, activities and change history of one record type."""
    base = f"/{plural}"
    return [
        Route(
            base,
            f"list_{plural}",
            f"{plural.capitalize()}, newest first",
            page_schema(ref(view)),
            lister,
            (*filters, *PAGING),
        ),
        Route(f"{base}/{{id}}", f"get_{one}", f"One {one}", ref(view), getter, (ID,)),
        Route(
            f"{base}/{{id}}/activities",
            f"list_{one}_activities",
            f"Activities (calls, mails, messages, tasks, comments) of a {one}, oldest first",
            page_schema(ref(ActivityView)),
            _history(one, _activities_page),
            (ID, *PAGING),
        ),
        Route(
            f"{base}/{{id}}/timeline",
            f"list_{one}_timeline",
            f"Change history of a {one}, oldest first",
            page_schema(ref(TimelineView)),
            _history(one, _timeline_page),
            (ID, *PAGING),
        ),
    ]


def api_routes() -> list[Route]:
    """Every data route of /api/v1 (the OpenAPI document route is added by the component)."""
    outcomes = tuple(o.value for o in Outcome if o is not Outcome.DUPLICATE)  # never stored
    return [
        *_record_routes("leads", "lead", LeadView, _list_leads, _get_lead, RECORD_FILTERS),
        *_record_routes(
            "deals", "deal", DealView, _list_deals, _get_deal, (*RECORD_FILTERS, *DEAL_FILTERS)
        ),
        *_record_routes("contacts", "contact", ContactView, _list_contacts, _get_contact, ()),
        *_record_routes("companies", "company", CompanyView, _list_companies, _get_company, ()),
        Route(
            "/events",
            "list_events",
            "Inbound events with their outcome and the reason for it, newest first",
            page_schema(ref(EventView)),
            _list_events,
            (
                Param("channel", "string", "Channel.", enum=tuple(c.value for c in Channel)),
                Param("outcome", "string", "What the event became.", enum=outcomes),
                *PAGING,
            ),
        ),
        Route(
            "/duplicates",
            "find_duplicates",
            "Which leads, contacts and companies hold these phones or emails (phones in any "
            "common format): the ids of those the token may read, a count of the others",
            ref(DuplicateHits),
            _duplicates,
            (
                Param("phone", "string", "A phone number; repeatable.", repeatable=True),
                Param("email", "string", "An email address; repeatable.", repeatable=True),
                Param(
                    "region",
                    "string",
                    "Country national phone numbers are read in (ISO 3166 alpha-2, e.g. AT; "
                    "default crm.default_region). An unknown one is 400.",
                    pattern="^[A-Za-z]{2}$",  # JSON Schema patterns search: anchored
                    example="AT",
                ),
            ),
            one_of=("phone", "email"),
        ),
    ]
