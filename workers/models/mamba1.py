"""Mamba-1 mixer (Gu & Dao, 2023): conv, input-dependent Δ/B/C, selective scan, SiLU gate."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kernels.selective_scan import selective_scan, selective_scan_step
from search_spaces import Mamba1Options
from workers.models.conv import CausalConv1d


@dataclass
class Mamba1State:
    conv: torch.Tensor  # [B, d_conv-1, d_inner]
    ssm: torch.Tensor  # [B, d_inner, N] fp32


class Mamba1(nn.Module):
    def __init__(self, d_model: int, opts: Mamba1Options):
        super().__init__()
        self.d_inner, self.d_state, self.dt_rank = opts.d_inner(d_model), opts.d_state, opts.rank(d_model)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv = CausalConv1d(self.d_inner, opts.d_conv, activation="silu")
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * self.d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        # S4D-real init A = -(1..N); Δ = softplus(bias) starts log-uniform in [1e-3, 1e-1]
        A = torch.arange(1, self.d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def init_state(self, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> Mamba1State:
        ssm = torch.zeros(batch, self.d_inner, self.d_state, device=device)
        return Mamba1State(self.conv.init_state(batch, device, dtype), ssm)

    def _split(self, u: torch.Tensor, conv_state: torch.Tensor | None):
        x, z = self.in_proj(u).chunk(2, dim=-1)
        x, conv_state = self.conv(x, conv_state)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt).float())
        return x, z, delta, B, C, conv_state

    def forward(self, u: torch.Tensor, state: Mamba1State | None = None) -> torch.Tensor:
        x, z, delta, B, C, conv_state = self._split(u, state.conv if state is not None else None)
        y = selective_scan(
            x,
            delta,
            -torch.exp(self.A_log.float()),
            B,
            C,
            D=self.D,
            z=z,
            initial_state=state.ssm if state is not None else None,
            return_final_state=state is not None,
        )
        if state is not None:
            y, ssm = y
            state.ssm.copy_(ssm)
            state.conv.copy_(conv_state)
        return self.out_proj(y)

    def step(self, u: torch.Tensor, state: Mamba1State) -> torch.Tensor:
        x, z, delta, B, C, conv = self._split(u[:, None], state.conv)
        y, ssm = selective_scan_step(
            x[:, 0], delta[:, 0], -torch.exp(self.A_log.float()), B[:, 0], C[:, 0], state.ssm, D=self.D, z=z[:, 0]
        )
        state.conv.copy_(conv)  # in place: a captured decode step keeps its buffers
        state.ssm.copy_(ssm)
        return self.out_proj(y)
