"""The refusal of a format that cannot hold an architecture."""

from __future__ import annotations

from search_spaces.config import ConfigError

__all__ = ["Unfit"]


class Unfit(ConfigError):
    """A format cannot hold the architecture: the message says why, and the package's public functions
    (`nas.export.hf_config`, `megatron_args`, `render`) add which formats can."""
