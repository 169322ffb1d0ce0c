"""Causal depthwise convolution over time, with a carried state for chunked and step-by-step use."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalConv1d(nn.Module):
    def __init__(self, channels: int, width: int, bias: bool = True):
        super().__init__()
        self.width = width
        self.conv = nn.Conv1d(channels, channels, width, groups=channels, bias=bias)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros(batch, self.width - 1, self.conv.in_channels, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, C], state [B, width-1, C] (the inputs before x) -> (y [B, T, C], new state)."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        xp = torch.cat([state.to(x.dtype), x], dim=1)  # [B, width-1+T, C]
        if x.is_cuda:
            y = F.conv1d(xp.transpose(1, 2), self.conv.weight, self.conv.bias, groups=self.conv.groups).transpose(1, 2)
        else:  # a few shifted multiply-adds: faster than the CPU's depthwise conv, its backward above all
            T, w = x.shape[1], self.conv.weight[:, 0]  # [C, width]
            y = xp[:, :T] * w[:, 0] if self.conv.bias is None else self.conv.bias + xp[:, :T] * w[:, 0]
            for k in range(1, self.width):
                y = y + xp[:, k : k + T] * w[:, k]
        return y, xp[:, xp.shape[1] - (self.width - 1) :]
