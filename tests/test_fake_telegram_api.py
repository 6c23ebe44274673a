"""The fake Bot API is faithful enough for python-telegram-bot's own client and parsing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity, Update
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakes.telegram_api import FakeTelegram, parse_html

TOKEN = "123456:TEST-TOKEN"
REP = 4242


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


async def _start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.effective_message is not None
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Take lead", callback_data="take:7")]])
    await update.effective_message.reply_text("New lead: <b>Anna</b>", reply_markup=keyboard)


async def _take(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await query.answer("Taken")
    await query.edit_message_text(f"Lead taken ({query.data})")


async def _contact(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None and message.contact is not None
    await message.reply_text(f"Got {message.contact.phone_number}")


def _builder(fake: FakeTelegram) -> ApplicationBuilder:  # type: ignore[type-arg]
    return ApplicationBuilder().token(TOKEN).base_url(fake.base_url)


def _add_handlers(app: Application) -> None:  # type: ignore[type-arg]
    app.add_handler(CommandHandler("start", _start))
    app.add_handler(CallbackQueryHandler(_take))
    app.add_handler(MessageHandler(filters.CONTACT, _contact))


@pytest.fixture
async def polling_app(fake: FakeTelegram) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    app = _builder(fake).build()
    _add_handlers(app)
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=1)
    yield app
    await app.updater.stop()
    await app.stop()
    await app.shutdown()


async def test_command_reply_and_button_press_round_trip(
    fake: FakeTelegram,
    polling_app: Application,  # type: ignore[type-arg]
) -> None:
    fake.user_message(REP, "/start", first_name="Rita", username="rita_sales")

    (call,) = await fake.wait_for("sendMessage")
    (reply,) = fake.sent_messages(REP)
    assert call.params["chat_id"] == REP
    assert reply["text"] == "New lead: <b>Anna</b>"  # no parse_mode: sent verbatim
    button = reply["reply_markup"]["inline_keyboard"][0][0]
    assert button == {"text": "Take lead", "callback_data": "take:7"}
    chat = {"id": REP, "type": "private", "first_name": "Rita", "username": "rita_sales"}
    assert reply["chat"] == chat
    assert reply["message_id"] == 2  # the user's /start was message 1 in the same chat

    fake.callback(REP, reply["message_id"], "take:7")
    (answer,) = await fake.wait_for("answerCallbackQuery")
    (edit,) = await fake.wait_for("editMessageText")
    assert answer.status == 200 and answer.params["text"] == "Taken"
    assert edit.status == 200
    stored = fake.message(REP, reply["message_id"])
    assert stored["text"] == "Lead taken (take:7)"
    assert "reply_markup" not in stored  # an edit without markup drops the keyboard
    assert fake.sent_messages(REP)[0]["text"] == "New lead: <b>Anna</b>"  # send-time snapshot


async def test_shared_contact_reaches_contact_handler(
    fake: FakeTelegram,
    polling_app: Application,  # type: ignore[type-arg]
) -> None:
    fake.shared_contact(REP, "+4915112345678", REP, first_name="Rita")
    await fake.wait_for("sendMessage")
    assert fake.sent_messages(REP)[0]["text"] == "Got +4915112345678"


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_rate_limit_then_recovery(fake: FakeTelegram) -> None:
    fake.fail_next("sendMessage", 429, 1, retry_after=1)
    async with _builder(fake).build() as app:
        with pytest.raises(RetryAfter, match="Retry in 1"):
            await app.bot.send_message(REP, "hello")
        sent = await app.bot.send_message(REP, "hello again")

    assert sent.text == "hello again" and sent.from_user is not None and sent.from_user.is_bot
    assert [c.status for c in fake.calls("sendMessage")] == [429, 200]
    assert [m["text"] for m in fake.sent_messages()] == ["hello again"]


@pytest.mark.parametrize("status", [500, 502])
async def test_server_errors_surface_as_network_errors(fake: FakeTelegram, status: int) -> None:
    fake.fail_next("sendmessage", status, 2)
    async with _builder(fake).build() as app:
        for _ in range(2):
            with pytest.raises(NetworkError):
                await app.bot.send_message(REP, "hello")
        await app.bot.send_message(REP, "finally")
    assert [m["text"] for m in fake.sent_messages(REP)] == ["finally"]


async def test_edit_errors_match_telegram(fake: FakeTelegram) -> None:
    async with _builder(fake).build() as app:
        with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
            await app.bot.edit_message_text("x", chat_id=REP, message_id=99)
        sent = await app.bot.send_message(REP, "same")
        with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
            await app.bot.edit_message_text("same", chat_id=REP, message_id=sent.message_id)
        await app.bot.delete_message(REP, sent.message_id)
        with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
            await app.bot.delete_message(REP, sent.message_id)


async def test_html_is_rendered_and_bad_html_rejected(fake: FakeTelegram) -> None:
    async with _builder(fake).build() as app:
        sent = await app.bot.send_message(REP, "<b>Ünal</b> &lt;a@b.de&gt;", parse_mode="HTML")
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities"):
            await app.bot.send_message(REP, "Name: <Anna>", parse_mode="HTML")
    assert sent.text == "Ünal <a@b.de>"
    assert sent.entities == (MessageEntity(MessageEntity.BOLD, 0, 4),)
    assert fake.calls("sendMessage")[1].status == 400
    assert len(fake.sent_messages()) == 1


def test_html_offsets_are_utf16_and_links_keep_urls() -> None:
    text, entities = parse_html('😀 <a href="https://x.test/?a=1&amp;b=2">link</a>')
    assert text == "😀 link"
    link = {"type": "text_link", "offset": 3, "length": 4, "url": "https://x.test/?a=1&b=2"}
    assert entities == [link]


async def test_photo_upload_commands_and_get_me(fake: FakeTelegram) -> None:
    async with _builder(fake).build() as app:
        me = await app.bot.get_me()
        photo = await app.bot.send_photo(REP, photo=b"\x89PNG fake", caption="card")
        await app.bot.set_my_commands([("start", "Start the bot")])
        commands = await app.bot.get_my_commands()
    assert me.username == "leadbot_test_bot" and me.can_join_groups is True
    assert photo.caption == "card" and photo.photo[-1].width == 320
    assert fake.calls("sendPhoto")[0].params["photo"]["file_name"]
    assert [(c.command, c.description) for c in commands] == [("start", "Start the bot")]


async def test_raw_http_json_form_and_unknown_method(fake: FakeTelegram) -> None:
    url = f"{fake.base_url}{TOKEN}"
    markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    async with aiohttp.ClientSession() as http:
        body = {"chat_id": REP, "text": "json", "reply_markup": markup}
        async with http.post(f"{url}/sendMessage", json=body) as r:
            assert (await r.json())["result"]["reply_markup"] == markup
        form = {"chat_id": str(REP), "text": "form", "reply_markup": '{"inline_keyboard": []}'}
        async with http.post(f"{url}/SENDMESSAGE", data=form) as r:
            assert (await r.json())["result"]["message_id"] == 2
        async with http.post(f"{url}/sendCarrierPigeon") as r:
            assert r.status == 404
            error = {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
            assert await r.json() == error
    assert [c.method for c in fake.calls()] == ["sendMessage", "sendMessage", "sendCarrierPigeon"]


async def test_get_updates_long_polls_until_an_update_arrives(fake: FakeTelegram) -> None:
    url = f"{fake.base_url}{TOKEN}/getUpdates"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json={"timeout": 0}) as r:
            assert (await r.json())["result"] == []
        started = time.monotonic()
        poll = asyncio.create_task(http.post(url, json={"offset": 0, "timeout": 5}))
        await asyncio.sleep(0.1)
        first = fake.user_message(REP, "hi")
        async with await poll as r:
            updates = (await r.json())["result"]
        assert time.monotonic() - started < 1
        assert [u["update_id"] for u in updates] == [first["update_id"]]

        second = fake.user_message(REP, "again")
        confirm = {"offset": second["update_id"], "timeout": 0, "limit": 5}
        async with http.post(url, data={k: str(v) for k, v in confirm.items()}) as r:
            assert [u["message"]["text"] for u in (await r.json())["result"]] == ["again"]


async def test_wait_for_timeout_reports_what_was_recorded(fake: FakeTelegram) -> None:
    async with _builder(fake).build() as app:
        await app.bot.send_chat_action(REP, "typing")
    with pytest.raises(AssertionError, match="sendChatAction"):
        await fake.wait_for("sendMessage", timeout=0.05)


async def test_webhook_delivery_with_secret_token(fake: FakeTelegram) -> None:
    # PTB's own start_webhook needs the tornado extra, which is not installed; the bot is
    # served by our aiohttp server instead, feeding PTB exactly like its webhook handler.
    app = _builder(fake).build()
    _add_handlers(app)

    async def receive(request: web.Request) -> web.Response:
        if request.headers.get("X-Telegram-Bot-Api-Secret-Token") != "s3cret":
            return web.Response(status=403)
        await app.process_update(Update.de_json(await request.json(), app.bot))
        return web.Response()

    hook_app = web.Application()
    hook_app.router.add_post("/tg", receive)
    runner = web.AppRunner(hook_app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook = f"http://127.0.0.1:{runner.addresses[0][1]}/tg"
    try:
        async with app:
            await app.bot.set_webhook(hook, secret_token="s3cret")
            update = fake.user_message(REP, "/start")
            assert await fake.post_webhook(hook, update, secret_token="wrong") == 403
            assert await fake.post_webhook(hook, update, secret_token="s3cret") == 200
            await fake.wait_for("sendMessage")
            info = await app.bot.get_webhook_info()
    finally:
        await runner.cleanup()
    assert info.url == hook
    assert fake.calls("setWebhook")[0].params["secret_token"] == "s3cret"


async def test_conditional_faults_queue_up_and_hit_only_matching_calls(fake: FakeTelegram) -> None:
    with_buttons = InlineKeyboardMarkup([[InlineKeyboardButton("Take", callback_data="t")]])
    fake.fail_next("sendMessage", 400, description="Bad Request: wrong buttons", when=_has_keyboard)
    fake.fail_next("sendMessage", 503)
    async with _builder(fake).build() as app:
        with pytest.raises(NetworkError, match="Service Unavailable"):
            await app.bot.send_message(REP, "plain")  # skips the 400, takes the 503
        await app.bot.send_message(REP, "plain again")
        with pytest.raises(BadRequest, match="Wrong buttons"):
            await app.bot.send_message(REP, "keyboard", reply_markup=with_buttons)
        await app.bot.send_message(REP, "keyboard again", reply_markup=with_buttons)
    assert [c.status for c in fake.calls("sendMessage")] == [503, 200, 400, 200]
    assert [m["text"] for m in fake.sent_messages(REP)] == ["plain again", "keyboard again"]
    assert fake.calls("sendMessage")[1].result["text"] == "plain again"


def _has_keyboard(params: dict[str, object]) -> bool:
    return "reply_markup" in params


async def test_a_hang_before_accepting_times_the_client_out_and_stores_nothing(
    fake: FakeTelegram,
) -> None:
    fake.hang_next("sendMessage", 1.0)
    async with _builder(fake).build() as app:
        started = time.monotonic()
        with pytest.raises(TimedOut):
            await app.bot.send_message(REP, "lost", read_timeout=0.2)
        assert time.monotonic() - started < 0.9
        (held,) = fake.calls("sendMessage")
        assert held.hung and held.status == 0
        sent = await app.bot.send_message(REP, "retried", read_timeout=0.2)
        await asyncio.sleep(1.0)  # the held call ends now: answered 504, still not stored
    assert held.status == 504 and held.result is None
    assert [m["text"] for m in fake.sent_messages(REP)] == ["retried"]
    assert sent.message_id == 1


async def test_a_hang_after_accepting_stores_the_message_the_client_never_hears_of(
    fake: FakeTelegram,
) -> None:
    fake.hang_next("sendMessage", 1.0, accept=True)
    async with _builder(fake).build() as app:
        with pytest.raises(TimedOut):
            await app.bot.send_message(REP, "twice", read_timeout=0.2)
        await app.bot.send_message(REP, "twice", read_timeout=0.2)
    first = fake.calls("sendMessage")[0]
    assert first.hung and first.status == 200 and first.result["message_id"] == 1
    assert [m["text"] for m in fake.sent_messages(REP)] == ["twice", "twice"]


async def test_fault_arguments_are_checked_and_faults_can_be_cleared(fake: FakeTelegram) -> None:
    with pytest.raises(ValueError):
        fake.hang_next("sendMessage", 0)
    with pytest.raises(ValueError):
        fake.fail_next("sendMessage", 200)
    fake.fail_next("sendMessage", 500)
    fake.clear_faults()
    async with _builder(fake).build() as app:
        await app.bot.send_message(REP, "through")
    assert [c.status for c in fake.calls("sendMessage")] == [200]
