"""Expected user errors (no photo, a bad file, a clip too long): one line in the UI and one in the log.

Gradio prints the whole traceback of every exception a handler raises, ``gr.Error`` included, so an
app log of ordinary mistakes would read like a log of crashes. A refusal made here is logged as one
line and shown as one line; anything else a handler raises is still a bug and keeps its traceback.
"""
from __future__ import annotations

import re
import sys

import gradio as gr

# An absolute path: from a "/" that starts a word to its last "/" (spaces allowed: folder names have
# them), never past a quote or the line's end.
SERVER_PATH = re.compile(r"(?<![\w.~])/(?:[^'\"/\n]+/)+")


def hide_paths(text: str) -> str:
    """``text`` with every absolute path cut to its last part: a message a worker or the store wrote
    (an exception's text) may name server folders, which no client is told."""
    return SERVER_PATH.sub("", text)


def user_error(message: str) -> gr.Error:
    """The error to raise for a request the user can fix: logged as one line, shown in the UI without
    any server path (``hide_paths``)."""
    print(f"stylenet app: refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(hide_paths(message), print_exception=False)
