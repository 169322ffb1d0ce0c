"""Causal grouped-query attention with RoPE or no positional encoding (NoPE)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import AttentionOptions


@dataclass
class KVCache:
    k: torch.Tensor  # [B, T_max, KV, hd]
    v: torch.Tensor  # [B, T_max, KV, hd]
    pos: int = 0  # tokens written so far


def rope(x: torch.Tensor, start: int, theta: float, rotary_dim: int) -> torch.Tensor:
    """Rotate the first `rotary_dim` dims of x [B, T, H, hd], as halves (x1, x2), by position·θ^(−2i/rotary_dim)."""
    T = x.shape[1]
    inv_freq = theta ** (-torch.arange(0, rotary_dim // 2, device=x.device, dtype=torch.float32) * 2 / rotary_dim)
    angles = torch.arange(start, start + T, device=x.device, dtype=torch.float32)[:, None] * inv_freq
    cos, sin = angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]  # [1, T, 1, rotary_dim/2]
    x1, x2, rest = x.float().split([rotary_dim // 2, rotary_dim // 2, x.shape[-1] - rotary_dim], dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest], dim=-1).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, d_model: int, opts: AttentionOptions):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = opts.dims(d_model)
        self.pos, self.theta = opts.pos, opts.rope_theta
        self.rotary_dim = 2 * max(1, round(opts.rope_fraction * self.head_dim / 2))
        self.q_proj = nn.Linear(d_model, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, self.kv_heads * self.head_dim, bias=False)
        self.out_proj = nn.Linear(self.heads * self.head_dim, d_model, bias=False)

    def init_state(self, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        shape = (batch, max_len, self.kv_heads, self.head_dim)
        return KVCache(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor, state: KVCache | None = None) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.kv_heads, self.head_dim)
        start = state.pos if state is not None else 0
        if self.pos == "rope":
            q, k = (rope(t, start, self.theta, self.rotary_dim) for t in (q, k))
        if state is not None:
            state.k[:, start : start + T] = k
            state.v[:, start : start + T] = v
            state.pos = start + T
            k, v = state.k[:, : start + T], state.v[:, : start + T]
        # [B, H, T, hd]; a query at position start+t sees keys 0..start+t
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        gqa = self.kv_heads != self.heads
        if start == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        elif T == 1:  # one new query sees every cached key
            y = F.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)
        else:
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, -1))

    def step(self, x: torch.Tensor, state: KVCache) -> torch.Tensor:
        """One token x [B, d] at position state.pos."""
        return self.forward(x[:, None], state)[:, 0]
