"""Durations as people read them, one format for the terminal and the app."""
from __future__ import annotations


def duration(seconds: float, estimate: bool = False) -> str:
    """'45 s', '3 min 05 s' or '2 h 07 min'. An ``estimate`` is said in whole minutes, at least one
    ('1 min', '13 min'): the precision a measured step time times the steps left has."""
    if estimate:
        seconds = 60 * max(1, round(seconds / 60))
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min" + ("" if estimate else f" {seconds % 60:02d} s")
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
