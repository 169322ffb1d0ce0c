"""LFM2's gated short convolution (Liquid AI, 2025): x → (b, c, h) = x W_in, y = c ⊙ conv(b ⊙ h), y W_out.

Input- and output-gated, with a causal depthwise convolution of a few taps between: its only state is the
convolution's last `d_conv − 1` inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from search_spaces import ShortConvOptions
from workers.models.conv import CausalConv1d


@dataclass
class ShortConvState:
    conv: torch.Tensor  # [B, d_conv-1, d]


class ShortConv(nn.Module):
    def __init__(self, d_model: int, opts: ShortConvOptions):
        super().__init__()
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=False)
        self.conv = CausalConv1d(d_model, opts.d_conv, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def init_state(self, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> ShortConvState:
        return ShortConvState(self.conv.init_state(batch, device, dtype))

    def forward(self, x: torch.Tensor, state: ShortConvState | None = None) -> torch.Tensor:
        """x [B, T, d] -> [B, T, d]; a given state is read as the past and updated in place."""
        b, c, h = self.in_proj(x).chunk(3, dim=-1)
        y, conv_state = self.conv(b * h, state.conv if state is not None else None)
        if state is not None:
            state.conv.copy_(conv_state)
        return self.out_proj(c * y)

    def step(self, x: torch.Tensor, state: ShortConvState) -> torch.Tensor:
        """One token x [B, d]."""
        return self.forward(x[:, None], state)[:, 0]
