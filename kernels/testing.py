"""Comparison helpers for the kernel tests: each implementation against its reference."""

from __future__ import annotations

import torch

__all__ = ["assert_close", "rel_error"]


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖ / ‖expected‖ in fp64; 0 when both are exactly zero."""
    actual, expected = actual.detach().double(), expected.detach().double()
    diff, scale = (actual - expected).norm().item(), expected.norm().item()
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def assert_close(name: str, actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    """Fail unless `actual` has the shape of `expected`, no NaN/inf, and a relative error ≤ `tol`."""
    assert actual.shape == expected.shape, f"{name}: shape {list(actual.shape)} != {list(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{name}: has NaN or inf values (an unwritten or overflowed element)"
    err = rel_error(actual, expected)
    assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e}"
