"""The pipeline board through the facade: columns, cards, filters, keyset paging, rights, and
moves with their refusals, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from crm.dto import Actor
from crm.errors import Conflict, Forbidden, InvalidInput
from crm.facade import Crm
from crm.services.board import BoardFilters
from crm.services.leads import LeadInput
from crm.services.records import ContactInput
from matching.event import Channel
from tests.conftest import make_event

ALL = BoardFilters()


async def _team(crm: Crm) -> tuple[Actor, Actor, Actor]:
    rita = await crm.reps.add("Rita Rep")
    sam = await crm.reps.add("Sam Rep")
    sue = await crm.reps.add("Sue Boss", role="supervisor")
    return Actor(rita.id, "rep"), Actor(sam.id, "rep"), Actor(sue.id, "supervisor")


async def test_lead_columns_show_statuses_counts_and_cards_a_rep_sees(crm: Crm) -> None:
    rita, sam, sue = await _team(crm)
    called = await crm.intake.process(
        make_event(phones=("030 1234567",), display_name="Anna Call", meta={"call_id": "c1"})
    )
    await crm.leads.assign(called.lead_id or 0, rita.rep_id or 0, sue)
    await crm.leads.create(LeadInput("Sam's", responsible_id=sam.rep_id, emails=("s@x.de",)))
    await crm.leads.create(LeadInput("Queue item"))

    board = await crm.board.columns("lead", ALL, sue)
    assert [c.code for c in board.columns] == [s.code for s in crm.config.lead_statuses]
    new = board.columns[0]
    assert (new.name, new.semantic, new.count) == ("New", "process", 3)
    assert [c.title for c in new.cards][:2] == ["Queue item", "Sam's"]  # newest first
    assert new.cards[2].id == called.lead_id
    [anna] = [c for col in board.columns for c in col.cards if c.id == called.lead_id]
    assert anna.client_name == "Anna Call" and anna.phone and "30" in anna.phone
    assert (anna.owner_name, anna.source, anna.repeat) == ("Rita Rep", "CALL", False)
    sams = next(c for c in new.cards if c.title == "Sam's")
    assert sams.email == "s@x.de" and sams.owner_name == "Sam Rep"

    mine = await crm.board.columns("lead", ALL, rita)
    titles = {c.title for col in mine.columns for c in col.cards}
    assert "Sam's" not in titles and "Queue item" in titles  # own + unassigned
    assert sum(col.count for col in mine.columns) == 2


async def test_a_column_pages_newest_first_with_a_stable_cursor(crm: Crm) -> None:
    ids = [(await crm.leads.create(LeadInput(f"Lead {i}"))).id for i in range(7)]
    _, _, sue = await _team(crm)
    first = (await crm.board.columns("lead", ALL, sue, per_column=3)).columns[0]
    seen = [c.id for c in first.cards]
    cursor = first.next_cursor
    while cursor:
        page = await crm.board.column_page("lead", "NEW", ALL, sue, after=cursor, limit=3)
        seen += [c.id for c in page.cards]
        cursor = page.next_cursor
    assert seen == sorted(ids, reverse=True)
    # A card created meanwhile does not shift the pages already handed out.
    again = await crm.board.column_page("lead", "NEW", ALL, sue, after=first.next_cursor, limit=3)
    await crm.leads.create(LeadInput("Newer"))
    same = await crm.board.column_page("lead", "NEW", ALL, sue, after=first.next_cursor, limit=3)
    assert [c.id for c in same.cards] == [c.id for c in again.cards]
    with pytest.raises(InvalidInput, match="page link is broken"):
        await crm.board.column_page("lead", "NEW", ALL, sue, after="not-a-cursor")
    with pytest.raises(InvalidInput, match="no column"):
        await crm.board.column_page("lead", "NOPE", ALL, sue)


async def test_filters_owner_source_repeat_dates_and_text(crm: Crm) -> None:
    rita, _, sue = await _team(crm)
    anna = await crm.records.create_contact(ContactInput(name="Anna Known", phones=("030 555",)))
    call = await crm.intake.process(make_event(phones=("040 777",), display_name="Otto"))
    mail = await crm.intake.process(
        make_event(channel=Channel.EMAIL, emails=("mia@example.org",), subject="Price?")
    )
    repeat = await crm.leads.create(
        LeadInput("Again", contact_id=anna.id, responsible_id=rita.rep_id)
    )

    async def titles(**kw: object) -> set[int]:
        board = await crm.board.columns("lead", BoardFilters(**kw), sue)  # type: ignore[arg-type]
        return {c.id for col in board.columns for c in col.cards}

    assert await titles(owner_id=rita.rep_id) >= {repeat.id}
    assert repeat.id not in await titles(unassigned=True)
    assert await titles(source="call") == {call.lead_id}
    assert await titles(source="EMAIL") == {mail.lead_id}
    assert await titles(repeat=True) == {repeat.id}
    assert repeat.id not in await titles(repeat=False)
    now = datetime.now(UTC)
    assert await titles(created_from=now + timedelta(minutes=1)) == set()
    assert (
        len(await titles(created_from=now - timedelta(hours=1), created_to=now + timedelta(1))) == 3
    )
    assert await titles(text="anna kno") == {repeat.id}  # the client's name
    assert await titles(text="+49 30 555") == {repeat.id}  # the client's phone
    assert await titles(text="mia@example.org") == {mail.lead_id}
    assert await titles(text="otto") == {call.lead_id}
    with pytest.raises(InvalidInput):
        await crm.board.columns("lead", BoardFilters(owner_id=1, unassigned=True), sue)


async def test_lead_moves_follow_the_lead_rules_and_rights(crm: Crm) -> None:
    rita, sam, _ = await _team(crm)
    lead = await crm.leads.create(LeadInput("Move me", responsible_id=rita.rep_id))
    card = await crm.board.move("lead", lead.id, "PROCESSED", rita)
    assert card.column == "PROCESSED"
    with pytest.raises(InvalidInput, match="cannot be dragged to 'Converted': convert it"):
        await crm.board.move("lead", lead.id, "CONVERTED", rita)
    with pytest.raises(InvalidInput, match="say why"):
        await crm.board.move("lead", lead.id, "JUNK", rita)
    with pytest.raises(Forbidden, match="another rep"):
        await crm.board.move("lead", lead.id, "IN_PROCESS", sam)
    with pytest.raises(Forbidden, match="another rep"):
        await crm.board.card("lead", lead.id, sam)
    with pytest.raises(InvalidInput, match="leads or deals"):
        await crm.board.move("ticket", lead.id, "NEW", rita)
    junk = await crm.board.move("lead", lead.id, "JUNK", rita, reason="spam")
    assert junk.column == "JUNK" and (await crm.leads.get(lead.id)).junk_reason == "spam"
    back = await crm.board.move("lead", lead.id, "IN_PROCESS", rita)  # reopened, then moved
    assert back.column == "IN_PROCESS"
    done = await crm.board.move("lead", lead.id, "CONVERTED", rita, convert=True, amount="120")
    assert done.column == "CONVERTED"
    with pytest.raises(Conflict, match="converted"):
        await crm.board.move("lead", lead.id, "NEW", rita)
    deals = await crm.board.columns("deal", ALL, rita)
    [deal] = [c for col in deals.columns for c in col.cards]
    assert (deal.amount, deal.currency, deal.client_name) == (Decimal("120.00"), "EUR", "Move me")


async def test_deal_columns_sum_amounts_and_final_stages_need_amount_or_reason(crm: Crm) -> None:
    rita, _, sue = await _team(crm)
    a = await crm.deals.create("A", amount=Decimal("100"), responsible_id=rita.rep_id)
    await crm.deals.create("B", amount=Decimal("50.5"), currency="USD")
    await crm.deals.create("C", amount=Decimal("20"))
    bare = await crm.deals.create("No amount", responsible_id=rita.rep_id)
    board = await crm.board.columns("deal", ALL, sue)
    assert board.pipeline == "sales"
    assert [c.code for c in board.columns] == ["NEW", "PREPARATION", "NEGOTIATION", "WON", "LOSE"]
    new = board.columns[0]
    assert new.count == 4 and new.sums == {"EUR": Decimal("120.00"), "USD": Decimal("50.50")}

    with pytest.raises(InvalidInput, match="with its amount"):
        await crm.board.move("deal", bare.id, "WON", rita)
    with pytest.raises(InvalidInput, match="say why"):
        await crm.board.move("deal", bare.id, "LOSE", rita)
    with pytest.raises(InvalidInput, match="no stage"):
        await crm.board.move("deal", bare.id, "NOWHERE", rita)
    won = await crm.board.move("deal", bare.id, "WON", rita, amount="75")
    assert (won.column, won.amount) == ("WON", Decimal("75.00"))
    lost = await crm.board.move("deal", a.id, "LOSE", rita, reason="too expensive")
    assert lost.column == "LOSE"
    told = (await crm.history.page("deal", a.id, rita)).items[0]
    assert (told.action, told.body) == ("lost", "too expensive")
    assert (await crm.board.move("deal", a.id, "NEGOTIATION", rita)).column == "NEGOTIATION"
    with pytest.raises(InvalidInput, match="not an amount"):
        await crm.board.move("deal", a.id, "WON", rita, amount="lots")


async def test_overdue_call_back_flags_the_card(crm: Crm) -> None:
    rita, _, _ = await _team(crm)
    lead = await crm.leads.create(LeadInput("Call me", responsible_id=rita.rep_id))
    await crm.activities.schedule(
        "lead", lead.id, due_at=datetime.now(UTC) - timedelta(minutes=5), subject="Call back"
    )
    later = await crm.leads.create(LeadInput("Later", responsible_id=rita.rep_id))
    await crm.activities.schedule(
        "lead", later.id, due_at=datetime.now(UTC) + timedelta(hours=5), subject="Call back"
    )
    cards = {c.title: c for c in (await crm.board.columns("lead", ALL, rita)).columns[0].cards}
    assert cards["Call me"].overdue_callback and not cards["Later"].overdue_callback


async def test_a_card_knows_when_its_next_call_back_falls_due(crm: Crm) -> None:
    rita, _, _ = await _team(crm)
    lead = await crm.leads.create(LeadInput("Call me", responsible_id=rita.rep_id))
    soon, later = (datetime.now(UTC) + timedelta(hours=h) for h in (1, 5))
    first = await crm.activities.schedule("lead", lead.id, due_at=later, subject="Call back")
    second = await crm.activities.schedule("lead", lead.id, due_at=soon, subject="Call back")
    card = await crm.board.card("lead", lead.id, rita)
    assert card.due_at == soon and not card.overdue_callback
    await crm.activities.complete(second.id, rita)
    assert (await crm.board.card("lead", lead.id, rita)).due_at == later
    await crm.activities.complete(first.id, rita)
    assert (await crm.board.card("lead", lead.id, rita)).due_at is None

    # The cards a call-back is on (a live board re-sends them); a comment is on none.
    assert await crm.board.cards_of_activity(first.id) == [("lead", lead.id)]
    comment = await crm.activities.comment("lead", lead.id, "called", rita)
    assert await crm.board.cards_of_activity(comment.id) == []
