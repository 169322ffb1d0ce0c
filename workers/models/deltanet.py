"""Gated DeltaNet (Yang, Kautz, Hatamizadeh 2024; the Qwen3-Next layout) and, with `gate: channel`, Kimi
Delta Attention (KDA, Kimi Linear): q/k/v projections, one causal short convolution over them with SiLU,
L2-normalised q and k, the gated delta rule, a per-head RMSNorm times the output gate, the projection down.

    decay    g = −exp(A_log) · softplus(x W_a + dt_bias)   a value per head, or (KDA) per head and key
                                                          channel from the low-rank x W_fa W_fb
    write    β = σ(x W_b)
    output   o = RMSNorm(delta rule) ⊙ silu(x W_g)        KDA: ⊙ σ(x W_ga W_gb)

With more value heads than q/k heads (Qwen3-Next: 32 and 16), each q/k head serves v_heads / heads of
them, as grouped-query attention shares its keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kernels.delta import gated_delta, gated_delta_step
from search_spaces import DeltaNetOptions
from workers.models.conv import CausalConv1d
from workers.models.norm import rms_norm


@dataclass
class DeltaNetState:
    conv: torch.Tensor  # [B, d_conv-1, 2·heads·head_dim + v_heads·v_head_dim]
    S: torch.Tensor  # [B, v_heads, head_dim, v_head_dim] fp32


class GatedDeltaNet(nn.Module):
    def __init__(self, d_model: int, opts: DeltaNetOptions, norm_eps: float = 1e-5):
        super().__init__()
        self.heads, self.head_dim, self.v_heads, self.v_head_dim = opts.dims(d_model)
        self.channel, self.chunk_size, self.eps = opts.gate == "channel", opts.chunk_size, norm_eps
        H, K, HV, V = self.heads, self.head_dim, self.v_heads, self.v_head_dim
        self.q_proj = nn.Linear(d_model, H * K, bias=False)
        self.k_proj = nn.Linear(d_model, H * K, bias=False)
        self.v_proj = nn.Linear(d_model, HV * V, bias=False)
        self.conv = CausalConv1d(2 * H * K + HV * V, opts.d_conv, bias=False, activation="silu")
        self.b_proj = nn.Linear(d_model, HV, bias=False)
        # decays start as Mamba-2's: dt = softplus(dt_bias) log-uniform in [1e-3, 1e-1], A = exp(A_log) in [1, 16]
        decays = HV * K if self.channel else HV
        dt = torch.exp(torch.rand(decays) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(HV).uniform_(1, 16)))
        if self.channel:  # KDA: low-rank decay and output-gate projections
            self.f_a_proj = nn.Linear(d_model, K, bias=False)
            self.f_b_proj = nn.Linear(K, HV * K, bias=False)
            self.g_a_proj = nn.Linear(d_model, V, bias=False)
            self.g_b_proj = nn.Linear(V, HV * V, bias=False)
        else:
            self.a_proj = nn.Linear(d_model, HV, bias=False)
            self.g_proj = nn.Linear(d_model, HV * V, bias=False)
        self.norm_weight = nn.Parameter(torch.ones(V))
        self.out_proj = nn.Linear(HV * V, d_model, bias=False)

    def init_state(self, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> DeltaNetState:
        S = torch.zeros(batch, self.v_heads, self.head_dim, self.v_head_dim, device=device)
        return DeltaNetState(self.conv.init_state(batch, device, dtype), S)

    def _inputs(self, x: torch.Tensor, conv_state: torch.Tensor | None):
        """x [B, T, d] -> q, k [B, T, HV, K], v [B, T, HV, V], g, β, and the new conv state."""
        B, T, _ = x.shape
        H, K, HV, V = self.heads, self.head_dim, self.v_heads, self.v_head_dim
        qkv, conv_state = self.conv(torch.cat([self.q_proj(x), self.k_proj(x), self.v_proj(x)], -1), conv_state)
        q, k, v = qkv.split([H * K, H * K, HV * V], dim=-1)
        q, k = (F.normalize(t.view(B, T, H, K).float(), dim=-1, eps=1e-6).to(t.dtype) for t in (q, k))
        if HV != H:  # each q/k head serves HV / H value heads
            q, k = q.repeat_interleave(HV // H, dim=2), k.repeat_interleave(HV // H, dim=2)
        if self.channel:
            a = self.f_b_proj(self.f_a_proj(x)).view(B, T, HV, K)
            g = -torch.exp(self.A_log.float())[:, None] * F.softplus(a.float() + self.dt_bias.view(HV, K))
        else:
            g = -torch.exp(self.A_log.float()) * F.softplus(self.a_proj(x).float() + self.dt_bias)  # [B, T, HV]
        beta = torch.sigmoid(self.b_proj(x).float())  # [B, T, HV]
        return q, k, v.view(B, T, HV, V), g, beta, conv_state

    def _out(self, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        """o [..., HV, V]: each head normalised, times the output gate, projected down."""
        o = rms_norm(o, self.norm_weight, self.eps)
        gate = torch.sigmoid(self.g_b_proj(self.g_a_proj(x))) if self.channel else F.silu(self.g_proj(x))
        return self.out_proj(o.flatten(-2) * gate)

    def forward(self, x: torch.Tensor, state: DeltaNetState | None = None) -> torch.Tensor:
        """x [B, T, d] -> [B, T, d]; a given state is read as the past and updated in place."""
        q, k, v, g, beta, conv_state = self._inputs(x, state.conv if state is not None else None)
        o = gated_delta(q, k, v, g, beta, initial_state=state.S if state is not None else None,
                        return_final_state=state is not None, chunk_size=self.chunk_size)
        if state is not None:
            o, S = o
            state.S.copy_(S)
            state.conv.copy_(conv_state)
        return self._out(x, o)

    def step(self, x: torch.Tensor, state: DeltaNetState) -> torch.Tensor:
        """One token x [B, d]."""
        q, k, v, g, beta, conv_state = self._inputs(x[:, None], state.conv)
        state.conv.copy_(conv_state)  # in place: a captured decode step keeps its buffers
        o, S = gated_delta_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0], beta[:, 0], state.S)
        state.S.copy_(S)
        return self._out(x, o)
