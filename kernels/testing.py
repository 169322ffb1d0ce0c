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


def assert_close(
    name: str, actual: torch.Tensor, expected: torch.Tensor, tol: float, zero_atol: float | None = None
) -> None:
    """Fail unless `actual` has the shape of `expected`, no NaN/inf, and a relative error ≤ `tol`.

    `zero_atol`: where `expected` is exactly zero (a gradient that vanishes in the math), every element
    of `actual` within `zero_atol` of zero instead; a relative error has no meaning there.
    """
    assert actual.shape == expected.shape, f"{name}: shape {list(actual.shape)} != {list(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{name}: has NaN or inf values (an unwritten or overflowed element)"
    if zero_atol is not None and not expected.any():
        worst = actual.detach().abs().max().item()
        assert worst <= zero_atol, f"{name}: zero in the math, largest element {worst:.2e} > {zero_atol:.0e}"
        return
    err = rel_error(actual, expected)
    assert err <= tol, f"{name}: relative error {err:.2e} > {tol:.0e}"
