"""Expected user errors (no photo, a bad file, a clip too long): one line in the UI and one in the log.

Gradio prints the whole traceback of every exception a handler raises, ``gr.Error`` included, so an
app log of ordinary mistakes would read like a log of crashes. A refusal made here is logged as one
line and shown as one line; anything else a handler raises is still a bug and keeps its traceback.
"""
from __future__ import annotations

import sys

import gradio as gr


def user_error(message: str) -> gr.Error:
    """The error to raise for a request the user can fix: logged as one line, shown in the UI."""
    print(f"stylenet app: refused: {message}", file=sys.stderr, flush=True)
    return gr.Error(message, print_exception=False)
