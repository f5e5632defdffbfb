"""Who is asking: every browser (or API client) is an owner, and sees and changes only what it made.

A browser is known by a cookie: the first response to a request without a valid ``stylenet-owner``
cookie sets one, a random token (``OwnerCookie``), and every later request of that browser carries it.
It is ``HttpOnly`` (no script of a page can read it, unlike anything in the browser's storage) and
``SameSite=Lax`` (another site's form or script cannot send it with a request that changes something).
Over https it is ``__Host-stylenet-owner``: ``Secure``, ``Path=/`` and no ``Domain``, which browsers
accept only from this very host, so a sibling subdomain (another app on ``*.gradio.live``, as ``--share``
serves) cannot toss in a cookie of its own choosing and make a browser its owner. A request carrying more
than one owner cookie (one tossed with another path or domain over http) has none: which is real cannot
be told. Every tab of a browser, a reload and a restart of the app share it, so they are one owner;
nothing has to be remembered per page on the server.

A client that does not keep cookies is owned by its ``session_hash`` alone (gradio_client keeps the
cookie its first request got, so one ``Client`` is one owner either way). A request with neither (a raw
``/gradio_api/call/<api>`` mints a session per call) is an owner of its own, never shared: nothing it
makes can be found again by anyone, itself included.

An owner is kept on disk (job.json) and in folder names only as a hash, never as the token itself:
nothing a client can list reveals what another would have to send to pass as its owner.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import sys
from collections.abc import Callable, Mapping
from http.cookies import SimpleCookie

import gradio as gr
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN = re.compile(r"[0-9a-f]{32}")
COOKIE = "stylenet-owner"  # over http
HOST_COOKIE = f"__Host-{COOKIE}"  # over https: a cookie only this host can set
COOKIE_DAYS = 400  # the longest browsers keep a cookie
LOCAL = "local"  # the default owner of the view functions called from Python (a test, a script); never a request's


def owner_id(kind: str, value: str) -> str:
    """The hash that stands for an owner in files and folder names (hex, so it is a safe name)."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:32]


def is_https(url: object, headers: Mapping[str, str]) -> bool:
    """Whether the browser reached the app over https (itself, or through a proxy that says so)."""
    return str(url).startswith("https:") or headers.get("x-forwarded-proto") == "https"


def cookie_token(url: object, headers: Mapping[str, str] | None) -> str | None:
    """The owner token of a request (its ``url`` and ``headers``), or None when there is none, or more than
    one (read from the raw Cookie header: a parsed mapping keeps one of them), or it is not one the app
    makes: a malformed value is never an owner. Over https only ``HOST_COOKIE`` counts."""
    headers = headers or {}
    name = HOST_COOKIE if is_https(url, headers) else COOKIE
    pairs = (part.strip().partition("=") for part in (headers.get("cookie") or "").split(";"))
    tokens = [value for key, _, value in pairs if key == name]
    return tokens[0] if len(tokens) == 1 and TOKEN.fullmatch(tokens[0]) else None


class OwnerCookie:
    """ASGI middleware: a request without a valid owner cookie gets a new one with its response.

    The request itself is answered as before (by its session, see ``Sessions.owner``): a client that
    drops the cookie must not become a new owner at each request. A malformed cookie is replaced.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        if cookie_token(connection.url, connection.headers):
            await self.app(scope, receive, send)
            return
        header = new_cookie(is_https(connection.url, connection.headers)).encode("latin-1")

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", header)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def new_cookie(https: bool) -> str:
    """A ``Set-Cookie`` value holding a fresh owner token (``HOST_COOKIE`` over https)."""
    name = HOST_COOKIE if https else COOKIE
    cookie: SimpleCookie = SimpleCookie()
    cookie[name] = secrets.token_hex(16)
    morsel = cookie[name]
    morsel.update({"path": "/", "max-age": str(COOKIE_DAYS * 86400), "httponly": True, "samesite": "Lax",
                   "secure": https})
    return morsel.OutputString()


class Sessions:
    """Who makes a request: the owner every tab asks before it shows or changes anything."""

    def owner(self, request: gr.Request | None) -> str:
        """The browser's cookie, else the client's session, else (nothing ties this request to another)
        a fresh owner of its own. Never one owner shared by all sessionless callers, which would let any
        of them list and cancel what another made."""
        token = cookie_token(getattr(request, "url", ""), getattr(request, "headers", None))
        if token:
            return owner_id("browser", token)
        if request is None or not request.session_hash:
            return owner_id("once", secrets.token_hex(16))
        return owner_id("session", request.session_hash)


def client_watch(blocks: gr.Blocks | None, request: gr.Request | None) -> Callable[[], bool]:
    """A check whether the client of this request has gone away.

    Gradio marks a client's events not alive when its connection closes (and drops a cancelled
    one from its active jobs), but a function already running in a thread goes on regardless; a
    long one asks this between batches. The request's own event is the one whose HTTP request is
    this request's (the same session may have others running: another tab, the same endpoint twice).
    Reads the queue's own records (``Blocks._queue``, not a public API): when they cannot be found,
    the client is taken to be there, and the log says so.
    """
    queue = getattr(blocks, "_queue", None)
    http = getattr(request, "request", None)
    mine = [event for job in getattr(queue, "active_jobs", None) or [] if job for event in job
            if http is not None and event.request is http]
    if not mine:
        print("stylenet app: warning: this request's event is not in the queue's records; its work cannot stop "
              "when its client leaves", file=sys.stderr, flush=True)
        return lambda: False
    event = mine[0]
    return lambda: not event.alive or not any(job and event in job for job in queue.active_jobs)
