"""How the app's handlers meet Gradio's queue: heavy work waits in it, light answers never do.

Gradio's ``max_size`` counts every waiting event, whatever its concurrency group, so with light
handlers in the queue one client filling it with heavy requests would make every page's Cancel, job
list, refresh and page load answer "Queue is full". Light handlers (reading a few small files, a
cheap remix) therefore skip the queue (``LIGHT``): they answer at once, in Gradio's thread pool.
"""
from __future__ import annotations

LIGHT = {"queue": False}  # the event options of a handler that must answer even when the queue is full
