"""Feed-forward sublayers: the dense MLP (SwiGLU, squared ReLU or GeLU) and the top-k routed MoE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import MLPOptions, MoEOptions


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int, activation: str = "swiglu"):
        super().__init__()
        self.activation = activation
        if activation == "swiglu":
            self.gate_proj = nn.Linear(d_model, d_ff, bias=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor, state: None = None) -> torch.Tensor:
        if self.activation == "swiglu":
            h = F.silu(self.gate_proj(x)) * self.up_proj(x)
        elif self.activation == "relu2":  # squared ReLU (Primer; Nemotron-H)
            h = F.relu(self.up_proj(x)).square()
        else:
            h = F.gelu(self.up_proj(x))
        return self.down_proj(h)

    def init_state(self, *args) -> None:
        return None

    def step(self, x: torch.Tensor, state: None = None) -> torch.Tensor:
        return self(x)


class DenseMLP(MLP):
    def __init__(self, d_model: int, opts: MLPOptions):
        super().__init__(d_model, opts.d_ff(d_model), opts.activation)


class MoE(nn.Module):
    """Softmax router, top-k experts with renormalised weights, no capacity limit (no dropped tokens).

    After each forward, `aux_loss` holds the Switch-Transformer load-balancing loss
    E · Σ_e f_e · P_e (f_e: share of routed slots, P_e: mean router probability), 1 when balanced.
    """

    def __init__(self, d_model: int, opts: MoEOptions):
        super().__init__()
        self.top_k, self.n_experts = opts.top_k, opts.experts
        self.router = nn.Linear(d_model, opts.experts, bias=False)
        self.experts = nn.ModuleList(MLP(d_model, opts.d_ff(d_model), opts.activation) for _ in range(opts.experts))
        self.shared = MLP(d_model, opts.d_ff_shared(d_model), opts.activation) if opts.shared_expert else None
        self.aux_loss = torch.zeros(())

    def forward(self, x: torch.Tensor, state: None = None) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # [N, d]
        probs = torch.softmax(self.router(x).float(), dim=-1)  # [N, E]
        weights, chosen = probs.topk(self.top_k, dim=-1)  # [N, k]
        weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)
        out = self._routed(x, chosen, weights)
        if self.shared is not None:
            out = out + self.shared(x).to(out.dtype)
        load = torch.zeros(self.n_experts, device=x.device).index_add_(
            0, chosen.flatten(), torch.ones(chosen.numel(), device=x.device)
        ) / chosen.numel()
        self.aux_loss = self.n_experts * (load * probs.mean(0)).sum()
        return out.view(shape)

    def _routed(self, x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Σ_j weights[n, j] · expert_{chosen[n, j]}(x[n]) for x [N, d], chosen and weights [N, k].

        The routed slots are sorted by expert into one zero-padded [E, capacity, d] batch and every expert
        runs as one batched matmul, whatever the number of experts. When the load is so uneven that the
        padding would more than double the work, each expert runs on its own tokens instead.
        """
        n_slots = chosen.numel()
        flat = chosen.flatten()  # the expert of each (token, slot)
        counts = torch.bincount(flat, minlength=self.n_experts)
        capacity = int(counts.max())
        # under torch.compile the capacity is a size known only at run time, which no branch can read
        if not torch.compiler.is_compiling() and self.n_experts * capacity > 2 * n_slots:
            return self._routed_each(x, chosen, weights)
        order = flat.argsort(stable=True)
        expert = flat[order]
        row = torch.arange(n_slots, device=x.device) - (counts.cumsum(0) - counts)[expert]
        token = order // chosen.shape[1]
        batch = x.new_zeros(self.n_experts, capacity, x.shape[1]).index_put((expert, row), x[token])
        experts = self.experts
        up = torch.stack([e.up_proj.weight for e in experts])  # [E, ff, d]
        h = torch.bmm(batch, up.transpose(1, 2))
        if experts[0].activation == "swiglu":
            gate = torch.stack([e.gate_proj.weight for e in experts])
            h = F.silu(torch.bmm(batch, gate.transpose(1, 2))) * h
        elif experts[0].activation == "relu2":
            h = F.relu(h).square()
        else:
            h = F.gelu(h)
        down = torch.stack([e.down_proj.weight for e in experts])  # [E, d, ff]
        y = torch.bmm(h, down.transpose(1, 2))[expert, row] * weights.flatten()[order, None]
        # under autocast the experts answer in bf16; the residual stream stays in its own dtype
        return torch.zeros_like(x).index_add_(0, token, y.to(x.dtype))

    def _routed_each(self, x: torch.Tensor, chosen: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            token, slot = (chosen == e).nonzero(as_tuple=True)
            if token.numel():
                out.index_add_(0, token, (expert(x[token]) * weights[token, slot, None]).to(out.dtype))
        return out

    def init_state(self, *args) -> None:
        return None

    def step(self, x: torch.Tensor, state: None = None) -> torch.Tensor:
        """One token per row, x [B, d]: the chosen experts' weights are gathered, not looked up on the host,
        so a CUDA graph can replay it."""
        probs = torch.softmax(self.router(x).float(), dim=-1)  # [B, E]
        weights, chosen = probs.topk(self.top_k, dim=-1)  # [B, k]
        weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)
        experts = self.experts
        up = torch.stack([e.up_proj.weight for e in experts])[chosen]  # [B, k, ff, d]
        h = torch.einsum("bd,bkfd->bkf", x, up)
        if experts[0].activation == "swiglu":
            gate = torch.stack([e.gate_proj.weight for e in experts])[chosen]
            h = F.silu(torch.einsum("bd,bkfd->bkf", x, gate)) * h
        elif experts[0].activation == "relu2":
            h = F.relu(h).square()
        else:
            h = F.gelu(h)
        down = torch.stack([e.down_proj.weight for e in experts])[chosen]  # [B, k, d, ff]
        out = torch.einsum("bkf,bkdf,bk->bd", h, down, weights)
        if self.shared is not None:
            out = out + self.shared(x)
        return out
