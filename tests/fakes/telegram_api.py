"""A loopback fake of the Telegram Bot API for end-to-end tests of the rep bot.

python-telegram-bot talks to it over real HTTP (``base_url``), so the bot's own request,
parsing and error handling code runs unchanged. Tests inject updates the way a user would
produce them, then assert on the recorded calls and on the per-chat message store.

Stored message text is what Telegram would store: for ``parse_mode=HTML`` the tags are
stripped and turned into entities, and malformed HTML is rejected with Telegram's 400 error,
so unescaped user text shows up as a failed call. The raw text stays in ``Call.params``.

Faults are queued per method (``fail_next``, ``hang_next``); each call takes the first queued
fault that applies to it (``when`` filters on the call's parameters), so a test can make
Telegram refuse only cards with buttons while every other call goes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, web

from tests.fakes.local_server import LocalServer

JsonDict = dict[str, Any]

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_BAD_QUERY_ID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
# Form-encoded bodies carry every value as a string; these fields are typed by Telegram.
_INT_FIELDS = frozenset(
    {"chat_id", "message_id", "offset", "limit", "timeout", "user_id", "reply_to_message_id",
     "max_connections", "message_thread_id", "cache_time"}
)  # fmt: skip
_JSON_FIELDS = frozenset(
    {"reply_markup", "entities", "caption_entities", "allowed_updates", "commands", "scope",
     "link_preview_options", "reply_parameters"}
)  # fmt: skip
_BOOL_FIELDS = frozenset(
    {"drop_pending_updates", "disable_notification", "show_alert", "protect_content",
     "disable_web_page_preview", "has_spoiler"}
)  # fmt: skip
_MAX_TEXT = 4096
_MAX_CAPTION = 1024


class ApiError(Exception):
    """A Telegram-style error response; raised inside method handlers."""

    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def body(self) -> JsonDict:
        payload: JsonDict = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            payload["parameters"] = {"retry_after": self.retry_after}
        return payload


@dataclass
class Call:
    """One request the bot made. ``at`` is ``time.monotonic()``; ``status`` the HTTP status;
    ``result`` what a successful call returned; ``hung`` whether ``hang_next`` held it (its
    status is 0 while it is held without having been carried out)."""

    method: str
    params: JsonDict
    at: float
    status: int = 200
    result: Any = None
    hung: bool = False


Condition = Callable[[JsonDict], bool]


@dataclass
class _Fault:
    remaining: int
    when: Condition | None
    status: int = 0  # an error answer (fail_next)
    retry_after: int | None = None
    description: str | None = None
    hang: float = 0.0  # seconds to hold the request (hang_next)
    accept: bool = False  # hang after carrying the call out, not before

    def error(self) -> ApiError:
        if self.status == 429:
            text = self.description or f"Too Many Requests: retry after {self.retry_after}"
            return ApiError(429, text, self.retry_after)
        default = _DEFAULT_DESCRIPTIONS.get(self.status, f"Error {self.status}")
        return ApiError(self.status, self.description or default, self.retry_after)


@dataclass
class _Webhook:
    url: str = ""
    secret_token: str | None = None
    max_connections: int = 40
    allowed_updates: list[str] = field(default_factory=list)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: the unit of Telegram entity offsets."""
    return len(text.encode("utf-16-le")) // 2


# --- HTML parse_mode --------------------------------------------------------------------------

_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "tg-spoiler": "spoiler", "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre",
    "blockquote": "blockquote", "tg-emoji": "custom_emoji",
}  # fmt: skip
_CHAR_REF = re.compile(r"&(#[0-9]+|#x[0-9a-fA-F]+|lt|gt|amp|quot);")
_START_TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]*)((?:\s[^>]*)?)>")
_END_TAG = re.compile(r"</([a-zA-Z][a-zA-Z0-9-]*)?\s*>")
_ATTR = re.compile(r"""([a-zA-Z][a-zA-Z0-9-]*)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")


@dataclass
class _OpenTag:
    name: str
    attrs: dict[str, str]
    start: int
    language: str | None = None


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode())


def _entity_for(tag: _OpenTag, end: int) -> JsonDict | None:
    kind = _HTML_TAGS[tag.name]
    entity: JsonDict = {"type": kind, "offset": tag.start, "length": end - tag.start}
    if kind == "text_link":
        url = tag.attrs.get("href", "")
        if not url:
            return None
        mention = re.fullmatch(r"tg://user\?id=(\d+)", url)
        if mention:
            user = {"id": int(mention.group(1)), "is_bot": False, "first_name": "User"}
            entity.update(type="text_mention", user=user)
        else:
            entity["url"] = url
    elif kind == "pre" and tag.language:
        entity["language"] = tag.language
    elif kind == "blockquote" and "expandable" in tag.attrs:
        entity["type"] = "expandable_blockquote"
    elif kind == "custom_emoji":
        entity["custom_emoji_id"] = tag.attrs.get("emoji-id", "")
    return entity


def _close_tag(stack: list[_OpenTag], name: str, end: int, entities: list[JsonDict]) -> None:
    tag = stack.pop()
    # <pre><code class="language-x"> marks the pre block's language, not a separate entity.
    css = tag.attrs.get("class", "")
    if name == "code" and stack and stack[-1].name == "pre" and css.startswith("language-"):
        stack[-1].language = css.removeprefix("language-")
        return
    entity = _entity_for(tag, end)
    if entity is not None and entity["length"] > 0:
        entities.append(entity)


def parse_html(src: str) -> tuple[str, list[JsonDict]]:
    """Render Telegram HTML to (plain text, entities); raise ApiError like Telegram does."""
    out: list[str] = []
    position = 0  # UTF-16 offset of the next output character
    stack: list[_OpenTag] = []
    entities: list[JsonDict] = []
    i = 0

    def fail(message: str) -> ApiError:
        return ApiError(400, f"Bad Request: can't parse entities: {message}")

    while i < len(src):
        char = src[i]
        if char == "<":
            end_tag = _END_TAG.match(src, i)
            start_tag = _START_TAG.match(src, i)
            if end_tag:
                name = (end_tag.group(1) or "").lower()
                if not stack:
                    raise fail(f"Unexpected end tag at byte offset {_byte_offset(src, i)}")
                if name and name != stack[-1].name:
                    raise fail(
                        f"Unmatched end tag at byte offset {_byte_offset(src, i)}, "
                        f'expected "</{stack[-1].name}>", found "</{name}>"'
                    )
                _close_tag(stack, stack[-1].name, position, entities)
                i = end_tag.end()
            elif start_tag:
                name = start_tag.group(1).lower()
                attrs = {
                    m.group(1).lower(): html.unescape(m.group(2) or m.group(3) or m.group(4) or "")
                    for m in _ATTR.finditer(start_tag.group(2))
                }
                if re.search(r"\bexpandable\b", start_tag.group(2)):
                    attrs.setdefault("expandable", "")
                spoiler_span = name != "span" or attrs.get("class") == "tg-spoiler"
                if name not in _HTML_TAGS or not spoiler_span:
                    raise fail(
                        f'Unsupported start tag "{name}" at byte offset {_byte_offset(src, i)}'
                    )
                stack.append(_OpenTag(name, attrs, position))
                i = start_tag.end()
            else:
                raise fail(f"Unsupported start tag at byte offset {_byte_offset(src, i)}")
            continue
        ref = _CHAR_REF.match(src, i) if char == "&" else None
        piece = html.unescape(ref.group(0)) if ref else char
        out.append(piece)
        position += utf16_len(piece)
        i = ref.end() if ref else i + 1
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


# --- request parsing --------------------------------------------------------------------------


def _coerce(name: str, value: Any) -> Any:
    """Give form-encoded string values the type Telegram would parse them into."""
    if isinstance(value, web.FileField):
        # The bytes too: a test can keep what the bot uploaded (the docs' /stats chart).
        data = value.file.read()
        return {"file_name": value.filename, "content_type": value.content_type, "data": data}
    if not isinstance(value, str):
        return value
    if name in _INT_FIELDS and re.fullmatch(r"-?\d+", value):
        return int(value)
    if name in _BOOL_FIELDS and value in ("true", "false", "True", "False"):
        return value.lower() == "true"
    if name in _JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            raise ApiError(400, f"Bad Request: can't parse {name} JSON object") from None
    return value


async def _read_params(request: web.Request) -> JsonDict:
    params: JsonDict = {k: _coerce(k, v) for k, v in request.query.items()}
    if not request.can_read_body:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "Bad Request: can't parse JSON request body") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Bad Request: request body must be a JSON object")
        params.update({k: _coerce(k, v) for k, v in body.items()})
        return params
    form = await request.post()
    for key, value in form.items():
        if isinstance(value, bytes):
            value = value.decode()
        params[key] = _coerce(key, value)
    return params


def _require_int(params: Mapping[str, Any], name: str, empty: str) -> int:
    value = params.get(name)
    if value is None or value == "":
        raise ApiError(400, f"Bad Request: {empty}")
    if isinstance(value, bool) or not isinstance(value, int):
        # A non-numeric chat_id is a @username Telegram would look up; the fake knows none.
        problem = "chat not found" if name == "chat_id" else f"invalid {name} specified"
        raise ApiError(400, f"Bad Request: {problem}")
    return value


def _optional_int(params: Mapping[str, Any], name: str, default: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"Bad Request: invalid {name} specified")
    return value


def _snapshot(message: JsonDict) -> JsonDict:
    """A deep copy, immune to later edits of the stored message."""
    copy: JsonDict = json.loads(json.dumps(message))
    return copy


def _as_reply(message: JsonDict) -> JsonDict:
    """The replied-to message embedded in a reply; Telegram never nests a further reply."""
    copy = _snapshot(message)
    copy.pop("reply_to_message", None)
    return copy


async def _wait_briefly(event: asyncio.Event, seconds: float) -> None:
    """Wait until ``event`` is set again or ``seconds`` pass, whichever is first."""
    event.clear()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


# --- the server -------------------------------------------------------------------------------

Handler = Callable[[JsonDict], Any]


class FakeTelegram(LocalServer):
    """Loopback Bot API: ``async with FakeTelegram() as tg: builder.base_url(tg.base_url)``."""

    def __init__(
        self,
        *,
        bot_id: int = 7000000001,
        bot_username: str = "leadbot_test_bot",
        bot_first_name: str = "Leadbot",
        token: str | None = None,
    ) -> None:
        # Set: only this token is accepted, any other is 401 Unauthorized as Telegram answers.
        self.token = token
        self.bot: JsonDict = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }
        self._calls: list[Call] = []
        self._sent: list[JsonDict] = []
        self._messages: dict[tuple[int, int], JsonDict] = {}
        self._last_message_id: dict[int, int] = {}
        self._users: dict[int, JsonDict] = {}
        self._updates: list[JsonDict] = []
        self._next_update_id = 1
        self._callback_ids = itertools.count(1)
        self._open_queries: set[str] = set()
        self._faults: dict[str, list[_Fault]] = {}
        self._commands: dict[tuple[str, str], list[JsonDict]] = {}
        self._allowed_updates: list[str] = []
        self._webhook = _Webhook()
        self._update_event = asyncio.Event()
        self._call_event = asyncio.Event()
        self._poll_generation = 0
        self._closing = False
        self._methods: dict[str, tuple[str, Handler]] = {
            name.lower(): (name, handler)
            for name, handler in {
                "getMe": self._get_me,
                "getUpdates": self._get_updates,
                "setWebhook": self._set_webhook,
                "deleteWebhook": self._delete_webhook,
                "getWebhookInfo": self._get_webhook_info,
                "sendMessage": self._send_message,
                "sendPhoto": self._send_photo,
                "editMessageText": self._edit_message_text,
                "editMessageReplyMarkup": self._edit_message_reply_markup,
                "deleteMessage": self._delete_message,
                "answerCallbackQuery": self._answer_callback_query,
                "setMyCommands": self._set_my_commands,
                "getMyCommands": self._get_my_commands,
                "deleteMyCommands": self._delete_my_commands,
                "sendChatAction": lambda params: True,
                "close": lambda params: True,
                "logOut": lambda params: True,
            }.items()
        }

    # --- lifecycle ---

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._handle)

    async def start(self) -> None:
        self._closing = False
        await super().start()

    async def stop(self) -> None:
        self._closing = True
        self._update_event.set()  # release long polls so the runner can shut down at once
        await super().stop()

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    # --- assertions ---

    def calls(self, method: str | None = None) -> list[Call]:
        wanted = method.lower() if method else None
        return [c for c in self._calls if wanted is None or c.method.lower() == wanted]

    def sent_messages(self, chat_id: int | None = None) -> list[JsonDict]:
        """Successful sendMessage/sendPhoto results, as returned at send time."""
        return [m for m in self._sent if chat_id is None or m["chat"]["id"] == chat_id]

    def message(self, chat_id: int, message_id: int) -> JsonDict:
        """Current state of a message (after edits); KeyError names what exists."""
        try:
            return self._messages[(chat_id, message_id)]
        except KeyError:
            known = sorted(mid for cid, mid in self._messages if cid == chat_id)
            raise KeyError(f"no message {message_id} in chat {chat_id}; have {known}") from None

    @property
    def webhook_url(self) -> str:
        return self._webhook.url

    @property
    def pending_updates(self) -> list[JsonDict]:
        return list(self._updates)

    def clear(self) -> None:
        """Forget recorded calls and sent messages (the message store and updates stay)."""
        self._calls.clear()
        self._sent.clear()

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 15.0,
        predicate: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Wait until at least ``count`` matching calls were recorded; return all matches.
        Returns as soon as they are there: the timeout only bounds a failing wait, generous
        for a machine loaded by other work."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [c for c in self.calls(method) if predicate is None or predicate(c)]
            remaining = deadline - loop.time()
            if len(found) >= count:
                return found
            if remaining <= 0:
                # Long polls would drown the report; count them instead of listing them.
                polls = len(self.calls("getUpdates"))
                seen = [
                    (c.method, c.status, c.params) for c in self._calls if c.method != "getUpdates"
                ]
                raise AssertionError(
                    f"expected {count} {method} call(s) within {timeout}s, got {len(found)}; "
                    f"recorded ({polls} getUpdates omitted): {seen}"
                )
            await _wait_briefly(self._call_event, remaining)

    # --- failure injection ---

    def fail_next(
        self,
        method: str,
        status: int,
        count: int = 1,
        retry_after: int | None = None,
        description: str | None = None,
        when: Condition | None = None,
    ) -> None:
        """Make the next ``count`` calls of ``method`` (those ``when`` accepts, given the call's
        parameters) fail with a Telegram-style error."""
        if count < 1 or not 400 <= status <= 599:
            raise ValueError(f"need count >= 1 and an error status, got {count}, {status}")
        if status == 429 and retry_after is None:
            retry_after = 1
        self._add_fault(method, _Fault(count, when, status, retry_after, description))

    def hang_next(
        self,
        method: str,
        seconds: float,
        count: int = 1,
        accept: bool = False,
        when: Condition | None = None,
    ) -> None:
        """Hold the next ``count`` calls of ``method`` for ``seconds`` before answering: a
        network that swallows requests. ``accept=False``: the call is not carried out and is
        answered 504 at the end (the client has usually given up by then). ``accept=True``:
        it is carried out first (a message is stored) and only the answer is late, the case in
        which a client that times out and retries posts the message twice."""
        if count < 1 or seconds <= 0:
            raise ValueError(f"need count >= 1 and seconds > 0, got {count}, {seconds}")
        self._add_fault(method, _Fault(count, when, hang=seconds, accept=accept))

    def clear_faults(self) -> None:
        """Forget every queued fault."""
        self._faults.clear()

    def _add_fault(self, method: str, fault: _Fault) -> None:
        self._faults.setdefault(method.lower(), []).append(fault)

    def _take_fault(self, method: str, params: JsonDict) -> _Fault | None:
        queued = self._faults.get(method.lower(), [])
        for fault in queued:
            if fault.when is None or fault.when(params):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queued.remove(fault)
                return fault
        return None

    # --- injecting updates ---

    def inject_update(self, update: JsonDict) -> JsonDict:
        """Queue a raw update; an update_id is assigned when missing."""
        if "update_id" not in update:
            update = {"update_id": self._next_update_id, **update}
        self._next_update_id = max(self._next_update_id, int(update["update_id"]) + 1)
        query = update.get("callback_query")
        if isinstance(query, dict) and "id" in query:
            self._open_queries.add(str(query["id"]))
        self._updates.append(update)
        self._update_event.set()
        return update

    def user(
        self, user_id: int, first_name: str | None = None, username: str | None = None
    ) -> JsonDict:
        """The User object for ``user_id``; names given once are remembered for later updates."""
        known = self._users.get(user_id)
        if known is not None and first_name is None and username is None:
            return known
        user: JsonDict = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name or (known or {}).get("first_name", "Test"),
        }
        username = username or (known or {}).get("username")
        if username:
            user["username"] = username
        self._users[user_id] = user
        return user

    def user_message(
        self,
        user_id: int,
        text: str,
        first_name: str | None = None,
        username: str | None = None,
        reply_to_message_id: int | None = None,
        contact: JsonDict | None = None,
    ) -> JsonDict:
        """A private-chat message from a user; ``/command`` text gets a bot_command entity."""
        if not text and contact is None:
            raise ValueError("a user message needs text or a contact")
        sender = self.user(user_id, first_name, username)
        message = self._new_message(user_id, sender)
        if text:
            message["text"] = text
            command = re.match(r"/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
            if command:
                length = utf16_len(command.group(0))
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        if contact is not None:
            message["contact"] = contact
        if reply_to_message_id is not None:
            message["reply_to_message"] = _as_reply(self.message(user_id, reply_to_message_id))
        self._messages[(user_id, message["message_id"])] = message
        return self.inject_update({"message": message})

    def shared_contact(
        self,
        user_id: int,
        phone_number: str,
        contact_user_id: int | None,
        first_name: str | None = None,
    ) -> JsonDict:
        """The user shares a contact card (e.g. their own via a request_contact button)."""
        name = first_name or self.user(user_id)["first_name"]
        contact: JsonDict = {"phone_number": phone_number, "first_name": name}
        if contact_user_id is not None:
            contact["user_id"] = contact_user_id
        return self.user_message(user_id, "", first_name=first_name, contact=contact)

    def callback(self, user_id: int, message_id: int, data: str) -> JsonDict:
        """The user presses an inline button on a message the bot sent to them."""
        message = self.message(user_id, message_id)
        query = {
            "id": str(next(self._callback_ids)),
            "from": self.user(user_id),
            "message": _snapshot(message),
            "chat_instance": f"ci-{user_id}",
            "data": data,
        }
        return self.inject_update({"callback_query": query})

    async def post_webhook(
        self, url: str, update: JsonDict, secret_token: str | None = None
    ) -> int:
        """POST an update to a bot's webhook as Telegram does; return the HTTP status."""
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret_token} if secret_token else {}
        async with ClientSession() as session, session.post(url, json=update, headers=headers) as r:
            await r.read()
            return r.status

    # --- HTTP dispatch ---

    async def _handle(self, request: web.Request) -> web.Response:
        requested = request.match_info["method"]
        name, handler = self._methods.get(requested.lower(), (requested, None))
        call = Call(name, {}, time.monotonic())
        self._record(call)
        try:
            if self.token is not None and request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            call.params = await _read_params(request)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            fault = self._take_fault(name, call.params)
            if fault is not None and fault.hang:
                return await self._hang(call, handler, fault)
            if fault is not None:
                raise fault.error()
            call.result = await self._carry_out(handler, call.params)
        except ApiError as error:
            call.status = error.status
            return web.json_response(error.body(), status=error.status)
        except Exception as error:  # a bug in the fake must reach the test, not hang it
            call.status = 500
            body = ApiError(500, f"Internal Server Error: fake failed with {error!r}").body()
            return web.json_response(body, status=500)
        return web.json_response({"ok": True, "result": call.result})

    @staticmethod
    async def _carry_out(handler: Handler, params: JsonDict) -> Any:
        result = handler(params)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    async def _hang(self, call: Call, handler: Handler, fault: _Fault) -> web.Response:
        call.hung = True
        if fault.accept:
            call.result = await self._carry_out(handler, call.params)
            await asyncio.sleep(fault.hang)
            return web.json_response({"ok": True, "result": call.result})
        call.status = 0  # no answer yet
        await asyncio.sleep(fault.hang)
        error = ApiError(504, _DEFAULT_DESCRIPTIONS[504])
        call.status = error.status
        return web.json_response(error.body(), status=error.status)

    def _record(self, call: Call) -> None:
        self._calls.append(call)
        self._call_event.set()

    # --- messages ---

    def _chat(self, chat_id: int) -> JsonDict:
        if chat_id < 0:
            kind = "supergroup" if str(chat_id).startswith("-100") else "group"
            return {"id": chat_id, "type": kind, "title": f"Group {chat_id}"}
        user = self._users.get(chat_id, {"first_name": "Test"})
        chat: JsonDict = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
        if "username" in user:
            chat["username"] = user["username"]
        return chat

    def _new_message(self, chat_id: int, sender: JsonDict) -> JsonDict:
        # Both sides of a private chat share one message_id sequence, as in Telegram.
        message_id = self._last_message_id.get(chat_id, 0) + 1
        self._last_message_id[chat_id] = message_id
        return {
            "message_id": message_id,
            "from": sender,
            "chat": self._chat(chat_id),
            "date": int(time.time()),
        }

    @staticmethod
    def _render(params: JsonDict, key: str, limit: int) -> tuple[str, list[JsonDict] | None]:
        raw = params.get(key, "")
        if not isinstance(raw, str):
            raise ApiError(400, f"Bad Request: {key} must be a string")
        if str(params.get("parse_mode", "")).lower() == "html":
            text, entities = parse_html(raw)
        else:
            given = params.get("entities" if key == "text" else "caption_entities")
            text, entities = raw, given if isinstance(given, list) else []
        if utf16_len(text) > limit:
            what = "message" if key == "text" else "message caption"
            raise ApiError(400, f"Bad Request: {what} is too long")
        return text, entities or None

    @staticmethod
    def _inline_markup(params: JsonDict) -> JsonDict | None:
        # Only inline keyboards belong to a message; reply keyboards stay with the client.
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            return markup
        return None

    def _store_sent(self, chat_id: int, content: JsonDict, params: JsonDict) -> JsonDict:
        message = self._new_message(chat_id, self.bot)
        message.update(content)
        markup = self._inline_markup(params)
        if markup is not None:
            message["reply_markup"] = markup
        reply = params.get("reply_parameters")
        reply_to = reply.get("message_id") if isinstance(reply, dict) else None
        reply_to = params.get("reply_to_message_id", reply_to)
        if isinstance(reply_to, int) and (chat_id, reply_to) in self._messages:
            message["reply_to_message"] = _as_reply(self._messages[(chat_id, reply_to)])
        self._messages[(chat_id, message["message_id"])] = message
        self._sent.append(_snapshot(message))
        return message

    def _send_message(self, params: JsonDict) -> JsonDict:
        chat_id = _require_int(params, "chat_id", "chat_id is empty")
        text, entities = self._render(params, "text", _MAX_TEXT)
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        content: JsonDict = {"text": text}
        if entities:
            content["entities"] = entities
        return self._store_sent(chat_id, content, params)

    def _send_photo(self, params: JsonDict) -> JsonDict:
        chat_id = _require_int(params, "chat_id", "chat_id is empty")
        if not params.get("photo"):
            raise ApiError(400, "Bad Request: there is no photo in the request")
        caption, entities = self._render(params, "caption", _MAX_CAPTION)
        file_id = f"fake-photo-{chat_id}-{self._last_message_id.get(chat_id, 0) + 1}"
        content: JsonDict = {
            "photo": [
                {"file_id": f"{file_id}-{side}", "file_unique_id": f"{file_id}-{side}u",
                 "width": side, "height": side, "file_size": side * side // 10}
                for side in (90, 320)
            ]
        }  # fmt: skip
        if caption:
            content["caption"] = caption
        if entities:
            content["caption_entities"] = entities
        return self._store_sent(chat_id, content, params)

    def _target(self, params: JsonDict, missing: str) -> JsonDict:
        chat_id = _require_int(params, "chat_id", "chat_id is empty")
        message_id = _require_int(params, "message_id", "message identifier is not specified")
        message = self._messages.get((chat_id, message_id))
        if message is None:
            raise ApiError(400, f"Bad Request: {missing}")
        return message

    def _apply_edit(self, message: JsonDict, changes: JsonDict) -> JsonDict:
        if all(message.get(k) == v for k, v in changes.items()):
            raise ApiError(400, _NOT_MODIFIED)
        for key, value in changes.items():
            if value is None:
                message.pop(key, None)
            else:
                message[key] = value
        message["edit_date"] = int(time.time())
        return message

    def _edit_message_text(self, params: JsonDict) -> JsonDict | bool:
        if "inline_message_id" in params:
            return True
        message = self._target(params, "message to edit not found")
        text, entities = self._render(params, "text", _MAX_TEXT)
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        # Editing without reply_markup drops the inline keyboard, as Telegram does.
        changes = {"text": text, "entities": entities, "reply_markup": self._inline_markup(params)}
        return self._apply_edit(message, changes)

    def _edit_message_reply_markup(self, params: JsonDict) -> JsonDict | bool:
        if "inline_message_id" in params:
            return True
        message = self._target(params, "message to edit not found")
        return self._apply_edit(message, {"reply_markup": self._inline_markup(params)})

    def _delete_message(self, params: JsonDict) -> bool:
        message = self._target(params, "message to delete not found")
        del self._messages[(message["chat"]["id"], message["message_id"])]
        return True

    def _answer_callback_query(self, params: JsonDict) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self._open_queries:
            raise ApiError(400, _BAD_QUERY_ID)
        self._open_queries.discard(query_id)
        return True

    # --- bot settings ---

    def _get_me(self, params: JsonDict) -> JsonDict:
        return {
            **self.bot,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    @staticmethod
    def _commands_key(params: JsonDict) -> tuple[str, str]:
        scope = params.get("scope") or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(params.get("language_code", ""))

    def _set_my_commands(self, params: JsonDict) -> bool:
        commands = params.get("commands")
        valid = isinstance(commands, list) and all(
            isinstance(c, dict) and c.get("command") and c.get("description") for c in commands
        )
        if not valid:
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        self._commands[self._commands_key(params)] = list(commands or [])
        return True

    def _get_my_commands(self, params: JsonDict) -> list[JsonDict]:
        return self._commands.get(self._commands_key(params), [])

    def _delete_my_commands(self, params: JsonDict) -> bool:
        """After deletion the scope's users see the next broader scope's commands."""
        self._commands.pop(self._commands_key(params), None)
        return True

    def menu(self, chat_id: int) -> list[str]:
        """The commands a user sees in their private chat with the bot (no language set):
        the first scope with commands of chat, all private chats, default, as Telegram
        determines the list."""
        for scope in ({"type": "chat", "chat_id": chat_id}, {"type": "all_private_chats"}, None):
            key = self._commands_key({"scope": scope})
            if key in self._commands:
                return [c["command"] for c in self._commands[key]]
        return []

    # --- updates and webhooks ---

    def _set_webhook(self, params: JsonDict) -> bool:
        url = str(params.get("url", ""))
        if url and not url.startswith("https://") and not url.startswith("http://"):
            raise ApiError(400, "Bad Request: bad webhook: invalid webhook URL specified")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self._webhook = _Webhook(
            url=url,
            secret_token=params.get("secret_token"),
            max_connections=_optional_int(params, "max_connections", 40),
            allowed_updates=list(params.get("allowed_updates") or []),
        )
        return True

    def _delete_webhook(self, params: JsonDict) -> bool:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        self._webhook = _Webhook()
        return True

    def _get_webhook_info(self, params: JsonDict) -> JsonDict:
        info: JsonDict = {
            "url": self._webhook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._webhook.url:
            info["max_connections"] = self._webhook.max_connections
            if self._webhook.allowed_updates:
                info["allowed_updates"] = self._webhook.allowed_updates
        return info

    def _deliverable(self, offset: int, limit: int) -> list[JsonDict]:
        # Telegram forgets every update below the offset once the bot confirms it.
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        allowed = self._allowed_updates

        def wanted(update: JsonDict) -> bool:
            return not allowed or any(kind in update for kind in allowed)

        return [u for u in self._updates if wanted(u)][:limit]

    async def _get_updates(self, params: JsonDict) -> list[JsonDict]:
        if self._webhook.url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _optional_int(params, "offset", 0)
        limit = min(max(_optional_int(params, "limit", 100), 1), 100)
        timeout = max(_optional_int(params, "timeout", 0), 0)
        if "allowed_updates" in params:  # sticky, as in Telegram; [] means "all default"
            self._allowed_updates = list(params["allowed_updates"] or [])
        self._poll_generation += 1
        generation = self._poll_generation
        self._update_event.set()  # wake an older long poll so it can report the conflict
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            found = self._deliverable(offset, limit)
            remaining = deadline - loop.time()
            if found or remaining <= 0 or self._closing:
                return found
            await _wait_briefly(self._update_event, remaining)
