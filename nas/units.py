"""Numbers for people: 6.74B parameters, 2.0 GiB, 1.2M tokens/s, 128K tokens of context."""

from __future__ import annotations

__all__ = ["context", "count", "nbytes", "parse_count"]


def count(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            v = n / scale
            return f"{v:.3g}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return f"{n:.3g}"


def nbytes(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            v = n / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{n:.0f} B"


def context(t: int) -> str:
    """4096 -> 4K, 131072 -> 128K, 1048576 -> 1M."""
    if t >= 2**20 and t % 2**20 == 0:
        return f"{t // 2**20}M"
    if t >= 2**10 and t % 2**10 == 0:
        return f"{t // 2**10}K"
    return str(t)


def parse_count(text: str) -> float:
    """'2e6', '2M', '25m', '1.5B' -> a number."""
    t = text.strip()
    mult = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}.get(t[-1:].lower())
    try:
        return float(t[:-1]) * mult if mult else float(t)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of parameters; write e.g. 2e6, 25M or 1.5B") from None
