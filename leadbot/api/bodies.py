"""JSON bodies of the write routes, as pydantic models: the same class checks a request and
writes its schema into the OpenAPI document. Unknown fields are refused (a misspelt field
must not be silently ignored); text is 1–200 characters without control characters, long
text (comments) up to 20,000."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from leadbot.api.params import INT32_MAX, MAX_REPEAT, MAX_STRING, NO_CONTROL_PATTERN

Text = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_STRING, pattern=NO_CONTROL_PATTERN)
]
# Comments may hold line breaks and tabs, no other control characters.
LongText = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=20_000, pattern="^[^\\u0000-\\u0008\\u000b-\\u001f\\u007f]*$"
    ),
]
# Source codes (CALL, EMAIL, WEB, …) as the records store them.
Source = Annotated[str, StringConstraints(min_length=1, max_length=30, pattern=NO_CONTROL_PATTERN)]
NamePart = Annotated[
    str, StringConstraints(min_length=1, max_length=150, pattern=NO_CONTROL_PATTERN)
]
Id = Annotated[int, Field(ge=1, le=INT32_MAX)]
Many = Annotated[list[Text], Field(max_length=MAX_REPEAT)]
Amount = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=2, allow_inf_nan=False)]
Currency = Annotated[str, StringConstraints(pattern="^[A-Z]{3}$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordRef(Body):
    type: Literal["lead", "contact", "company"]
    id: Id


class Force(Body):
    """Whether to save although a phone, email or handle is known: without it a hit answers
    409 with the hits."""

    force: bool = Field(False, description="Save even though phones or emails are known.")


class Duplicates(Force):
    """How to treat a duplicate warning: without either, a hit answers 409 with the hits."""

    attach_to: RecordRef | None = Field(
        None, description="Put the new data onto this record (one of the hits) instead."
    )


class CommsFields(Body):
    phones: Many = []
    emails: Many = []
    telegram: Many = Field([], description="Telegram user ids or @usernames.")
    whatsapp: Many = Field([], description="WhatsApp numbers.")


class ContactFields(CommsFields):
    name: Text | None = None
    first_name: NamePart | None = None
    last_name: NamePart | None = None
    company_id: Id | None = None
    comments: LongText | None = None


class NewContact(ContactFields):
    owner_id: Id | None = Field(None, description="Responsible rep (a rep token: itself).")


class CreateContact(NewContact, Duplicates):
    pass


class CreateCompany(CommsFields, Duplicates):
    title: Text
    contacts: Annotated[list[NewContact], Field(max_length=MAX_REPEAT)] = []
    contact_ids: Annotated[list[Id], Field(max_length=MAX_REPEAT)] = Field(
        [], description="Existing contacts that join the company."
    )
    owner_id: Id | None = None


class UpdateContact(ContactFields, Force):
    pass


class UpdateCompany(CommsFields, Force):
    title: Text | None = None


class CreateLead(CommsFields, Duplicates):
    title: Text
    name: Text | None = None
    company_title: Text | None = None
    source: Source = "OTHER"
    owner_id: Id | None = None
    comments: LongText | None = None


class UpdateLead(CommsFields, Force):
    title: Text | None = None
    name: Text | None = None
    company_title: Text | None = None
    source: Source | None = None
    comments: LongText | None = None


class CreateDeal(Body):
    title: Text
    contact_id: Id | None = None
    company_id: Id | None = None
    pipeline: Text | None = None
    stage: Text | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    source: Source | None = None
    owner_id: Id | None = None


class UpdateDeal(Body):
    title: Text | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    source: Source | None = None


class Comment(Body):
    text: LongText


class Reminder(Body):
    due_at: AwareDatetime = Field(description="When to call back (with a timezone).")
    subject: Text = "Call back"
    responsible_id: Id | None = None


class LeadStatus(Body):
    status: Text
    reason: Text | None = Field(None, description="Why, when the status is a failure one.")


class DealStage(Body):
    stage: Text
    pipeline: Text | None = Field(None, description="Move to this pipeline's stage.")


class Convert(Body):
    into: Annotated[list[Literal["contact", "company", "deal"]], Field(max_length=3)] | None = None
    amount: Amount | None = None
    existing_deal_id: Id | None = None


class Win(Body):
    amount: Amount | None = None
    currency: Currency | None = None


class Lose(Body):
    reason: Text | None = None


class Assign(Body):
    rep_id: Id


def body_schemas(models: list[type[Body]]) -> dict[str, Any]:
    """The JSON schemas of the bodies (and what they use) for components/schemas."""
    out: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out
