"""The layer-pattern notation: one symbol per pre-norm residual sublayer.

Megatron-LM's hybrid patterns (`M`, `*`, `-`, `E`, and `|` between pipeline stages) are valid here
unchanged; `m` (Mamba-1), `X` (mLSTM), `D` (Gated DeltaNet, or KDA with `deltanet.gate: channel`), `C`
(LFM2's gated short convolution) and `W` (attention over a sliding window) extend them.

    >>> parse_pattern("M-M*-|M-M-")
    'M-M*-M-M-'
    >>> abbreviate("m-mEm-mE*-mEm-mE" * 4)
    '(m-mEm-mE*-mEm-mE)×4'
"""

from __future__ import annotations

from collections import Counter

__all__ = [
    "FAMILIES",
    "FFN_SYMBOLS",
    "MIXER_SYMBOLS",
    "SYMBOLS",
    "PatternError",
    "abbreviate",
    "count",
    "parse_pattern",
]

# symbol -> (family key in ArchConfig, what a user calls it)
SYMBOLS: dict[str, tuple[str, str]] = {
    "*": ("attention", "attention"),
    "M": ("mamba2", "Mamba-2"),
    "m": ("mamba1", "Mamba-1"),
    "X": ("mlstm", "mLSTM"),
    "D": ("deltanet", "Gated DeltaNet"),
    "C": ("shortconv", "gated short convolution"),
    "W": ("local_attention", "sliding-window attention"),
    "-": ("mlp", "dense MLP"),
    "E": ("moe", "MoE"),
}
FAMILIES: dict[str, str] = {family: symbol for symbol, (family, _) in SYMBOLS.items()}
MIXER_SYMBOLS = "*MmXDCW"
FFN_SYMBOLS = "-E"
# Megatron-LM separates pipeline stages with '|'; the model itself does not see them.
_IGNORED = "|"


class PatternError(ValueError):
    """A layer pattern that is not valid; the message says what and where."""


def parse_pattern(pattern: str) -> str:
    """Validate a layer pattern and return it without pipeline separators."""
    if not isinstance(pattern, str):
        raise PatternError(f"the pattern must be a string of layer symbols, got {type(pattern).__name__}")
    for pos, ch in enumerate(pattern):
        if ch in SYMBOLS or ch in _IGNORED:
            continue
        if ch == "/":
            raise PatternError(
                f"the pattern has Megatron's multi-token-prediction separator '/' at position {pos}; "
                "keep only the main decoder's pattern (the part before '/')"
            )
        shown = repr(ch) if ch.isprintable() and not ch.isspace() else f"{ch!r} (whitespace)"
        allowed = ", ".join(f"'{s}' {name}" for s, (_, name) in SYMBOLS.items())
        raise PatternError(
            f"unknown layer symbol {shown} at position {pos} of the pattern {pattern!r}; "
            f"use {allowed} ('|' between pipeline stages is ignored)"
        )
    layers = "".join(ch for ch in pattern if ch not in _IGNORED)
    if not layers:
        raise PatternError("the pattern is empty; give at least one layer symbol, e.g. 'M-M*-'")
    return layers


def count(pattern: str) -> Counter[str]:
    """Number of sublayers of each family, keyed by family name (`attention`, `mamba2`, ...)."""
    return Counter(SYMBOLS[ch][0] for ch in pattern)


def _period(s: str) -> int:
    """Length of the shortest unit u with s == u * k."""
    n = len(s)
    for p in range(1, n // 2 + 1):
        if n % p == 0 and s[:p] * (n // p) == s:
            return p
    return n


def abbreviate(pattern: str, width: int = 24) -> str:
    """A short rendering for tables: `(unit)×k` for periodic patterns, else head…tail with the length."""
    if len(pattern) <= width:
        return pattern
    p = _period(pattern)
    if p < len(pattern) and p + 4 <= width:
        unit = pattern[:p]
        return f"{unit}×{len(pattern) // p}" if p == 1 else f"({unit})×{len(pattern) // p}"
    keep = max(4, (width - 8) // 2)
    return f"{pattern[:keep]}…{pattern[-keep:]} ({len(pattern)})"
