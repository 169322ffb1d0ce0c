"""Causal depthwise convolution over time in plain PyTorch: the ground truth of the Triton kernels.

    y_t[c] = act(bias[c] + Σ_k w[c, k] · x_{t-(W-1)+k}[c]),   x_{-j} = initial_state[W-1-j] (zeros if none)

A handful of shifted multiply-adds: on the CPU faster than `F.conv1d`'s depthwise path, its backward above all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    initial_state: torch.Tensor | None = None,
    activation: str | None = None,
) -> torch.Tensor:
    """x `[B, T, C]`, weight `[C, W]`, bias `[C]`, initial_state `[B, W-1, C]` -> y `[B, T, C]` (x's dtype),
    summed in fp32 (fp64 for fp64 inputs), as the kernels sum it."""
    T, W = x.shape[1], weight.shape[1]
    acc = torch.promote_types(x.dtype, torch.float32)
    past = x.new_zeros(x.shape[0], W - 1, x.shape[2]) if initial_state is None else initial_state.to(x.dtype)
    xp = torch.cat([past, x], dim=1).to(acc)  # [B, W-1+T, C]; the state is rounded to x's dtype, as it is kept
    w = weight.to(acc)
    y = xp[:, :T] * w[:, 0]
    if bias is not None:
        y = y + bias.to(acc)
    for k in range(1, W):
        y = y + xp[:, k : k + T] * w[:, k]
    if activation == "silu":
        y = F.silu(y)
    return y.to(x.dtype)
