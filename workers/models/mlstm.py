"""xLSTM's mLSTM layer (Beck et al., 2024; the xLSTM-7B layout): q/k/v and gate projections up from
d_model, the matrix-memory recurrence, a per-head norm, the output gate, and the projection back down."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from kernels.mlstm import mlstm, mlstm_step
from search_spaces import MLSTMOptions
from workers.models.norm import rms_norm


@dataclass
class MLSTMState:
    C: torch.Tensor  # [B, H, K, V] fp32
    n: torch.Tensor  # [B, H, K] fp32
    m: torch.Tensor  # [B, H] fp32


class MLSTM(nn.Module):
    def __init__(self, d_model: int, opts: MLSTMOptions, norm_eps: float = 1e-5):
        super().__init__()
        self.heads, qk, v = opts.heads, opts.qk_dim(d_model), opts.v_dim(d_model)
        self.k_dim, self.v_dim, self.eps = qk // self.heads, v // self.heads, norm_eps
        self.q_proj = nn.Linear(d_model, qk, bias=False)
        self.k_proj = nn.Linear(d_model, qk, bias=False)
        self.v_proj = nn.Linear(d_model, v, bias=False)
        self.o_proj = nn.Linear(d_model, v, bias=False)  # output gate
        self.igate = nn.Linear(d_model, self.heads, bias=True)
        self.fgate = nn.Linear(d_model, self.heads, bias=True)
        self.norm_weight = nn.Parameter(torch.ones(v))
        self.out_proj = nn.Linear(v, d_model, bias=False)
        # forget gates start open (σ(3..6) ≈ 0.95..0.998), input gates small, as in xLSTM
        with torch.no_grad():
            self.fgate.bias.copy_(torch.linspace(3.0, 6.0, self.heads))
            self.igate.bias.fill_(-10.0)
            self.igate.weight.zero_()

    def init_state(self, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> MLSTMState:
        H, K, V = self.heads, self.k_dim, self.v_dim
        return MLSTMState(
            torch.zeros(batch, H, K, V, device=device),
            torch.zeros(batch, H, K, device=device),
            torch.zeros(batch, H, device=device),
        )

    def _project(self, x: torch.Tensor):
        shape = (*x.shape[:-1], self.heads)
        q = self.q_proj(x).view(*shape, self.k_dim)
        k = self.k_proj(x).view(*shape, self.k_dim)
        v = self.v_proj(x).view(*shape, self.v_dim)
        return q, k, v, self.igate(x), self.fgate(x)

    def _out(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        h = rms_norm(h, torch.ones((), device=h.device, dtype=h.dtype), self.eps).flatten(-2) * self.norm_weight
        return self.out_proj(torch.sigmoid(self.o_proj(x)) * h)

    def forward(self, x: torch.Tensor, state: MLSTMState | None = None) -> torch.Tensor:
        q, k, v, i, f = self._project(x)
        init = (state.C, state.n, state.m) if state is not None else None
        h = mlstm(q, k, v, i, f, initial_state=init, return_final_state=state is not None)
        if state is not None:
            h, (C, n, m) = h
            state.C.copy_(C)
            state.n.copy_(n)
            state.m.copy_(m)
        return self._out(x, h)

    def step(self, x: torch.Tensor, state: MLSTMState) -> torch.Tensor:
        q, k, v, i, f = self._project(x)
        h, (C, n, m) = mlstm_step(q, k, v, i, f, (state.C, state.n, state.m))
        state.C.copy_(C)  # in place: a captured decode step keeps its buffers
        state.n.copy_(n)
        state.m.copy_(m)
        return self._out(x, h)
