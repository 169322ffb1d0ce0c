"""Proxy language models built from an `ArchConfig` (parallel path for training, step path for decoding)."""

from workers.models.lm import (
    SUBLAYERS,
    GraphDecoder,
    HybridLM,
    LMOutput,
    build_model,
    compile_blocks,
    uncompile_blocks,
)

__all__ = ["SUBLAYERS", "GraphDecoder", "HybridLM", "LMOutput", "build_model", "compile_blocks", "uncompile_blocks"]
