"""The architecture language: `ArchConfig`, its pattern notation, presets and the analytic cost model,
search spaces, and the strict-config helpers every package shares (`config`: `ConfigError`, YAML loading).

Imports nothing heavy (no torch): `nas --help` and the cost model stay instant.
"""

from search_spaces.arch import (
    ArchConfig,
    AttentionOptions,
    DeltaNetOptions,
    LocalAttentionOptions,
    Mamba1Options,
    Mamba2Options,
    MLPOptions,
    MLSTMOptions,
    MoEOptions,
    ShortConvOptions,
)
from search_spaces.config import ConfigError
from search_spaces.pattern import SYMBOLS, PatternError, abbreviate, parse_pattern

__all__ = [
    "SYMBOLS",
    "ArchConfig",
    "AttentionOptions",
    "ConfigError",
    "DeltaNetOptions",
    "LocalAttentionOptions",
    "MLPOptions",
    "MLSTMOptions",
    "Mamba1Options",
    "Mamba2Options",
    "MoEOptions",
    "PatternError",
    "ShortConvOptions",
    "abbreviate",
    "parse_pattern",
]
