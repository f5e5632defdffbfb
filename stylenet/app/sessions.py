"""Who is asking: every browser (or API client) is an owner, and sees and changes only what it made.

A browser keeps a random token in its own storage (``gr.BrowserState``), so a reload, or a restart of
the app, keeps its jobs and styles. Gradio encrypts it with the app's secret but sends that secret to
every page (``/config``): the token is protected only as well as the browser's storage is. The page sends the token
once, when it loads (``start``); after that every request of the page is matched to it through
Gradio's ``session_hash``, so the API's parameters stay as they were. A client that never loaded the
page (``gradio_client``, raw HTTP) is owned by its ``session_hash`` alone: one ``Client`` is one owner.
A request with no session at all (a raw ``/gradio_api/call/<api>`` call mints one per call) is an owner
of its own, never shared: nothing it makes can be found again by anyone, itself included.

An owner is kept on disk (job.json) and in folder names only as a hash, never as the token itself:
nothing a client can list reveals what another would have to send to pass as its owner.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import gradio as gr

TOKEN = re.compile(r"[0-9a-f]{32}")
LOCAL = "local"  # the default owner of the view functions called from Python (a test, a script); never a request's
SECRET_FILE = "browser.secret"


def owner_id(kind: str, value: str) -> str:
    """The hash that stands for an owner in files and folder names (hex, so it is a safe name)."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:32]


def browser_secret(folder: Path | None) -> str:
    """The key the browsers' tokens are encrypted with: kept in ``folder`` (the models folder) so it
    outlives a restart; random for this process alone when there is no folder."""
    if folder is None:
        return secrets.token_hex(16)
    path = Path(folder) / SECRET_FILE
    try:
        secret = path.read_text().strip()
    except FileNotFoundError:
        secret = ""
    if not TOKEN.fullmatch(secret):
        secret = secrets.token_hex(16)
        path.touch(mode=0o600)
        path.write_text(secret)
    return secret


class Sessions:
    """session_hash -> owner, for the pages that sent their token (at most ``keep``, oldest forgotten)."""

    def __init__(self, keep: int = 10_000) -> None:
        self.owners: OrderedDict[str, str] = OrderedDict()
        self.keep = keep
        self.lock = threading.Lock()

    def start(self, token: object, request: gr.Request | None = None) -> str:
        """A page has loaded with its stored token (a new one when it has none): its requests are that owner's."""
        if not isinstance(token, str) or not TOKEN.fullmatch(token):
            token = secrets.token_hex(16)
        if request is not None and request.session_hash:
            with self.lock:
                self.owners[request.session_hash] = owner_id("browser", token)
                self.owners.move_to_end(request.session_hash)
                while len(self.owners) > self.keep:
                    self.owners.popitem(last=False)
        return token

    def forget(self, request: gr.Request | None = None) -> None:
        """The page was closed."""
        if request is not None and request.session_hash:
            with self.lock:
                self.owners.pop(request.session_hash, None)

    def owner(self, request: gr.Request | None) -> str:
        """Who makes this request: the page's token holder, else the client's session, else (no session:
        nothing ties this request to another) a fresh owner of its own. Never one owner shared by all
        sessionless callers, which would let any of them list and cancel what another made."""
        if request is None or not request.session_hash:
            return owner_id("once", secrets.token_hex(16))
        with self.lock:
            known = self.owners.get(request.session_hash)
        return known or owner_id("session", request.session_hash)


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
