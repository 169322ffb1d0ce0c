"""Causal depthwise convolution over time (+ SiLU), with a carried state for chunked and step-by-step use."""

from __future__ import annotations

import torch
from torch import nn

from kernels.conv1d import causal_conv1d


class CausalConv1d(nn.Module):
    """`nn.Conv1d`'s parameters (so checkpoints and exports read as Mamba's), run by `kernels.conv1d`: one
    fused Triton kernel each way on the GPU, the activation included."""

    def __init__(self, channels: int, width: int, bias: bool = True, activation: str | None = None):
        super().__init__()
        self.width, self.activation = width, activation
        self.conv = nn.Conv1d(channels, channels, width, groups=channels, bias=bias)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros(batch, self.width - 1, self.conv.in_channels, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, C], state [B, width-1, C] (the inputs before x) -> (y [B, T, C], new state)."""
        y = causal_conv1d(x, self.conv.weight[:, 0], self.conv.bias, initial_state=state, activation=self.activation)
        keep = self.width - 1
        if x.shape[1] >= keep:
            new_state = x[:, x.shape[1] - keep :]
        else:
            past = state.to(x.dtype) if state is not None else self.init_state(x.shape[0], x.device, x.dtype)
            new_state = torch.cat([past, x], dim=1)[:, x.shape[1] :]
        return y, new_state

