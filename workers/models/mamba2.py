"""Mamba-2 mixer (Dao & Gu, 2024): one input projection, causal conv over (x, B, C), SSD, gated norm."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kernels.ssd import ssd, ssd_step
from search_spaces import Mamba2Options
from workers.models.conv import CausalConv1d
from workers.models.norm import GatedRMSNorm


@dataclass
class Mamba2State:
    conv: torch.Tensor  # [B, d_conv-1, d_inner + 2·G·N]
    ssm: torch.Tensor  # [B, H, P, N] fp32


class Mamba2(nn.Module):
    def __init__(self, d_model: int, opts: Mamba2Options, norm_eps: float = 1e-5):
        super().__init__()
        self.d_inner, self.n_heads = opts.d_inner(d_model), opts.n_heads(d_model)
        self.head_dim, self.n_groups, self.d_state = opts.head_dim, opts.n_groups, opts.d_state
        self.chunk_size = opts.chunk_size
        gn = self.n_groups * self.d_state
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner + 2 * gn + self.n_heads, bias=False)
        self.in_pad = -self.in_proj.out_features % 16  # see _project
        self.conv = CausalConv1d(self.d_inner + 2 * gn, opts.d_conv, activation="silu")
        # dt = softplus(raw + dt_bias) starts log-uniform in [1e-3, 1e-1]; A = -exp(A_log) in [-16, -1]
        dt = torch.exp(torch.rand(self.n_heads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.empty(self.n_heads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        # norm(y·silu(z)) over each group of channels (Mamba-2's), over each head, or no norm at all
        groups = {"group": self.n_groups, "head": self.n_heads, "none": None}[opts.norm]
        self.norm = GatedRMSNorm(self.d_inner, groups=groups, eps=norm_eps) if groups else None
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def init_state(self, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> Mamba2State:
        ssm = torch.zeros(batch, self.n_heads, self.head_dim, self.d_state, device=device)
        return Mamba2State(self.conv.init_state(batch, device, dtype), ssm)

    def _project(self, u: torch.Tensor) -> torch.Tensor:
        """in_proj(u) [B, T, 2·d_inner + 2·G·N + H], its rows padded to a multiple of 16 elements when T > 1.

        The weight keeps Mamba's shape; the padding is made as the projection runs. 2·d_inner + 2·G·N + H is
        rarely a multiple of 16 (1934 at d448), and the conv's kernels read their slice of an unaligned row
        element by element: padded, the compiled 25M Mamba-2 proxy trained 11% faster on an H200
        (benchmarks/in_proj_padding.py). One token (a decode step) has no rows to align and is not padded.
        """
        w = self.in_proj.weight
        return F.linear(u, F.pad(w, (0, 0, 0, self.in_pad)) if self.in_pad and u.shape[1] > 1 else w)

    def _split(self, u: torch.Tensor, conv_state: torch.Tensor | None):
        gn = self.n_groups * self.d_state
        zxbcdt = self._project(u)
        pad = zxbcdt.shape[-1] - self.in_proj.out_features
        z, xbc, dt, _ = zxbcdt.split([self.d_inner, self.d_inner + 2 * gn, self.n_heads, pad], dim=-1)
        xbc, conv_state = self.conv(xbc, conv_state)
        x, B, C = xbc.split([self.d_inner, gn, gn], dim=-1)
        dt = F.softplus(dt.float() + self.dt_bias)
        return z, x, B, C, dt, conv_state

    def forward(self, u: torch.Tensor, state: Mamba2State | None = None) -> torch.Tensor:
        """u [B, T, d] -> [B, T, d]; a given state is read as the past and updated in place."""
        b, T, _ = u.shape
        z, x, B, C, dt, conv_state = self._split(u, state.conv if state is not None else None)
        y = ssd(
            x.view(b, T, self.n_heads, self.head_dim),
            dt,
            -torch.exp(self.A_log.float()),
            B.view(b, T, self.n_groups, self.d_state),
            C.view(b, T, self.n_groups, self.d_state),
            D=self.D,
            initial_state=state.ssm if state is not None else None,
            return_final_state=state is not None,
            chunk_size=self.chunk_size,
        )
        if state is not None:
            y, ssm = y
            state.ssm.copy_(ssm)
            state.conv.copy_(conv_state)
        return self.out_proj(self._gate(y.reshape(b, T, self.d_inner), z))

    def step(self, u: torch.Tensor, state: Mamba2State) -> torch.Tensor:
        """One token u [B, d]."""
        b = u.shape[0]
        z, x, B, C, dt, conv = self._split(u[:, None], state.conv)
        state.conv.copy_(conv)  # in place: a captured decode step keeps its buffers
        y, _ = ssd_step(  # the state advances where it lies (one kernel on the GPU)
            x.view(b, self.n_heads, self.head_dim),
            dt.view(b, self.n_heads),
            -torch.exp(self.A_log.float()),
            B.view(b, self.n_groups, self.d_state),
            C.view(b, self.n_groups, self.d_state),
            state.ssm,
            D=self.D,
            inplace=True,
        )
        return self.out_proj(self._gate(y.reshape(b, self.d_inner), z[:, 0]))

    def _gate(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return y * F.silu(z) if self.norm is None else self.norm(y, z)
