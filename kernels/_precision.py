"""The precision the plain-PyTorch references compute in."""

from __future__ import annotations

import torch


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """fp32, or fp64 for fp64 inputs: the tests' ground truth runs the references in fp64."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
