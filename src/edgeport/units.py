"""How numbers read in the table report: sizes in B/KB/MB, a dash for a value not measured."""

from __future__ import annotations

DASH = "-"


def num(value, fmt: str) -> str:
    return DASH if value is None else format(value, fmt)


def size(value) -> str:
    if value is None:
        return DASH
    for unit, step in (("MB", 1e6), ("KB", 1e3)):
        if value >= step:
            return f"{value / step:.1f} {unit}"
    return f"{value} B"
