"""Sizes and durations as docker prints them (its go-units package): one place for
`images`, `history`, `ps`, `save`/`load` and the progress bars."""

from __future__ import annotations


def human_size(n: float) -> str:
    """Decimal units, three significant digits (go-units HumanSizeWithPrecision): "2.14MB"."""
    units = ("B", "kB", "MB", "GB", "TB", "PB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.3g}{units[i]}"


def bar_size(n: float) -> str:
    """Bytes beside a progress bar: whole bytes, else one decimal ("12.3MB")."""
    for unit in ("B", "kB", "MB"):
        if n < 1000:
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}GB"


def bar(done: int, total: int, width: int = 30) -> str:
    """docker's progress bar: "[=====>      ]", `width` cells between the brackets."""
    k = min(width, int(width * done / total))
    return "[" + "=" * max(0, k - 1) + ">" + " " * (width - k) + "]"


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: "About a minute", "3 hours", "2 weeks"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"
