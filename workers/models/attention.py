"""Causal grouped-query attention with RoPE or no positional encoding (NoPE); optionally over a sliding
window, with q/k RMSNorm, and with Qwen3-Next's output gate."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import AttentionOptions
from workers.models.norm import RMSNorm


@dataclass
class KVCache:
    k: torch.Tensor  # [B, KV, slots, hd]: a decode step's scores are one batched GEMM against it
    v: torch.Tensor  # [B, KV, slots, hd]; slots: max_len, or for a window a ring (position p in slot p % slots)
    pos: torch.Tensor  # [1] long, on the device: tokens written so far (a CUDA graph reads it there)


def _rope_table(positions: torch.Tensor, theta: float, rotary_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin, [T, rotary_dim/2] fp32, of the angles positions [T] · θ^(−2i/rotary_dim)."""
    inv_freq = theta ** (-torch.arange(0, rotary_dim // 2, device=positions.device, dtype=torch.float32) * 2
                         / rotary_dim)
    angles = positions.float()[:, None] * inv_freq
    return angles.cos(), angles.sin()


# The table as an operator of its own, for torch.compile: traced inline, Inductor fuses it into the kernel that
# rotates q and k and evaluates sin and cos again for every element of every head (that kernel then took longer
# than the attention it feeds). Eagerly the operator's dispatch would only add to each call, so `rope` calls it
# only while compiling.
rope_table = torch.library.custom_op("hybrid_nas::rope_table", _rope_table, mutates_args=())


@rope_table.register_fake
def _(positions, theta, rotary_dim):
    table = positions.new_empty(positions.shape[0], rotary_dim // 2, dtype=torch.float32)
    return table, torch.empty_like(table)


def rope(x: torch.Tensor, start: int | torch.Tensor, theta: float, rotary_dim: int) -> torch.Tensor:
    """Rotate the first `rotary_dim` dims of x [B, T, H, hd], as halves (x1, x2), by position·θ^(−2i/rotary_dim).

    `start` (the position of x[:, 0]) may be a device tensor, so that a captured decode step reads it there.
    """
    table = rope_table if torch.compiler.is_compiling() else _rope_table
    cos, sin = table(torch.arange(x.shape[1], device=x.device) + start, theta, rotary_dim)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]  # [1, T, 1, rotary_dim/2]
    x1, x2, rest = x.float().split([rotary_dim // 2, rotary_dim // 2, x.shape[-1] - rotary_dim], dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos, rest], dim=-1).to(x.dtype)


def ring_positions(pos: torch.Tensor, slots: int) -> torch.Tensor:
    """[slots] long: the position each slot of a ring holds once `pos` tokens are written (p in slot p % slots),
    negative for a slot not yet written."""
    i = torch.arange(slots, device=pos.device)
    return pos - 1 - torch.remainder(pos - 1 - i, slots)


class Attention(nn.Module):
    def __init__(self, d_model: int, opts: AttentionOptions, norm_eps: float = 1e-5):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = opts.dims(d_model)
        self.pos, self.theta, self.window = opts.pos, opts.rope_theta, opts.window
        self.rotary_dim = 2 * max(1, round(opts.rope_fraction * self.head_dim / 2))
        self.q_proj = nn.Linear(d_model, self.heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, self.kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, self.kv_heads * self.head_dim, bias=False)
        self.g_proj = nn.Linear(d_model, self.heads * self.head_dim, bias=False) if opts.output_gate else None
        self.q_norm = RMSNorm(self.head_dim, norm_eps) if opts.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, norm_eps) if opts.qk_norm else None
        self.out_proj = nn.Linear(self.heads * self.head_dim, d_model, bias=False)

    def init_state(self, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        slots = max_len if self.window is None else min(max_len, self.window)  # a window's cache stops growing
        shape = (batch, self.kv_heads, slots, self.head_dim)
        zeros = lambda: torch.zeros(shape, device=device, dtype=dtype)  # noqa: E731
        return KVCache(zeros(), zeros(), torch.zeros(1, dtype=torch.long, device=device))

    def _qkv(self, x: torch.Tensor, start):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.kv_heads, self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if self.pos == "rope":
            q, k = (rope(t, start, self.theta, self.rotary_dim) for t in (q, k))
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, T, hd]

    def _out(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y [..., heads·hd] -> [..., d], through the output gate when there is one."""
        if self.g_proj is not None:
            y = y * torch.sigmoid(self.g_proj(x))
        return self.out_proj(y)

    def forward(self, x: torch.Tensor, state: KVCache | None = None) -> torch.Tensor:
        """The parallel path; with a cache, x continues it (prefill) and is written into it."""
        B, T, _ = x.shape
        start = int(state.pos) if state is not None else 0
        q, k, v = self._qkv(x, start)
        qpos = torch.arange(start, start + T, device=x.device)
        kpos = qpos
        if state is not None and self.window is None:
            state.k[:, :, start : start + T] = k
            state.v[:, :, start : start + T] = v
            k, v = state.k[:, :, : start + T], state.v[:, :, : start + T]
            kpos = torch.arange(start + T, device=x.device)
        elif state is not None:  # the ring's earlier tokens, then these; the latest `slots` go into the ring
            slots = state.k.shape[2]
            kpos = torch.cat([ring_positions(state.pos, slots), qpos])
            kept = slice(max(0, T - slots), None)
            ring_k, ring_v = state.k.clone(), state.v.clone()
            state.k[:, :, qpos[kept] % slots] = k[:, :, kept]
            state.v[:, :, qpos[kept] % slots] = v[:, :, kept]
            k, v = torch.cat([ring_k.to(k.dtype), k], dim=2), torch.cat([ring_v.to(v.dtype), v], dim=2)
        if state is not None:
            state.pos.fill_(start + T)
        gqa = self.kv_heads != self.heads
        if start == 0 and (self.window is None or (state is None and self.window >= T)):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
        else:  # a query sees the keys at or before it, within the window if there is one
            mask = (kpos[None, :] <= qpos[:, None]) & (kpos[None, :] >= 0)
            if self.window is not None:
                mask &= kpos[None, :] > qpos[:, None] - self.window
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=gqa)
        return self._out(x, y.transpose(1, 2).reshape(B, T, -1))

    def step(self, x: torch.Tensor, state: KVCache) -> torch.Tensor:
        """One token x [B, d] at position state.pos: no host syncs, so a CUDA graph can replay it."""
        B = x.shape[0]
        q, k, v = self._qkv(x[:, None], state.pos)  # [B, heads, 1, hd]
        slots = state.k.shape[2]
        slot = state.pos if self.window is None else torch.remainder(state.pos, slots)
        state.k.index_copy_(2, slot, k.to(state.k.dtype))
        state.v.index_copy_(2, slot, v.to(state.v.dtype))
        groups = self.heads // self.kv_heads
        qg = q.view(B, self.kv_heads, groups, self.head_dim)  # query heads sharing one kv head
        scores = torch.matmul(qg, state.k.transpose(2, 3)) / self.head_dim**0.5  # [B, KV, G, slots]
        if self.window is None:
            visible = torch.arange(slots, device=x.device) <= state.pos
        else:  # every written slot of the ring is within the window
            visible = ring_positions(state.pos + 1, slots) >= 0
        p = torch.softmax(scores.float().masked_fill(~visible, float("-inf")), dim=-1).to(state.v.dtype)
        y = torch.matmul(p, state.v)  # [B, KV, G, hd]
        state.pos += 1
        return self._out(x, y.reshape(B, -1).to(x.dtype))
