"""The proxy language model: embedding, pre-norm residual sublayers in pattern order, RMSNorm, head.

    model = HybridLM(ArchConfig(pattern="M-M*-", d_model=128))
    out = model(idx, targets)                 # parallel path: logits, loss (+ MoE aux), aux_loss
    cache = model.init_cache(batch, max_len)
    logits = model.prefill(prompt, cache)     # parallel path, filling the cache
    logits = model.step(token, cache)         # one token with the cache (decode)
    compile_blocks(model)                     # each block compiled (the GPU profiles train this way)
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import ArchConfig
from workers.models.attention import Attention
from workers.models.deltanet import GatedDeltaNet
from workers.models.mamba1 import Mamba1
from workers.models.mamba2 import Mamba2
from workers.models.mlp import DenseMLP, MoE
from workers.models.mlstm import MLSTM
from workers.models.norm import RMSNorm
from workers.models.shortconv import ShortConv

SUBLAYERS: dict[str, Any] = {
    "attention": lambda cfg: Attention(cfg.d_model, cfg.attention, cfg.norm_eps),
    "local_attention": lambda cfg: Attention(cfg.d_model, cfg.local_attention, cfg.norm_eps),
    "mamba2": lambda cfg: Mamba2(cfg.d_model, cfg.mamba2, cfg.norm_eps),
    "mamba1": lambda cfg: Mamba1(cfg.d_model, cfg.mamba1),
    "mlstm": lambda cfg: MLSTM(cfg.d_model, cfg.mlstm, cfg.norm_eps),
    "deltanet": lambda cfg: GatedDeltaNet(cfg.d_model, cfg.deltanet, cfg.norm_eps),
    "shortconv": lambda cfg: ShortConv(cfg.d_model, cfg.shortconv),
    "mlp": lambda cfg: DenseMLP(cfg.d_model, cfg.mlp),
    "moe": lambda cfg: MoE(cfg.d_model, cfg.moe),
}
# init is left to these modules: their parameters encode decay rates and gate biases
_OWN_INIT = ("dt_proj", "igate", "fgate")
_RESIDUAL_OUT = ("out_proj", "down_proj")


class LMOutput(NamedTuple):
    logits: torch.Tensor  # [B, T, V]
    loss: torch.Tensor | None  # cross-entropy + weighted MoE aux loss
    aux_loss: torch.Tensor  # sum of the MoE load-balancing losses (unweighted)


class Block(nn.Module):
    """x + sublayer(norm(x))."""

    def __init__(self, family: str, cfg: ArchConfig):
        super().__init__()
        self.family = family
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.sublayer = SUBLAYERS[family](cfg)

    def forward(self, x: torch.Tensor, state: Any = None) -> torch.Tensor:
        return x + self.sublayer(self.norm(x), state)

    def step(self, x: torch.Tensor, state: Any) -> torch.Tensor:
        return x + self.sublayer.step(self.norm(x), state)


class HybridLM(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(family, cfg) for family in cfg.layers)
        self.norm_f = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self._init_weights()
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.aux_weight = cfg.moe.aux_loss_weight if cfg.moe is not None else 0.0

    def _init_weights(self) -> None:
        std = 0.02
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and not name.endswith(_OWN_INIT):
                scale = 1 / math.sqrt(2 * len(self.blocks)) if name.endswith(_RESIDUAL_OUT) else 1.0
                nn.init.normal_(module.weight, std=std * scale)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=std)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _moe_aux(self) -> torch.Tensor:
        aux = [b.sublayer.aux_loss for b in self.blocks if b.family == "moe"]
        return torch.stack(aux).sum() if aux else torch.zeros((), device=self.embed.weight.device)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> LMOutput:
        """idx [B, T] token ids; targets [B, T] with -100 where a position is not scored."""
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.norm_f(x))
        aux = self._moe_aux()
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100)
            loss = loss + self.aux_weight * aux
        return LMOutput(logits, loss, aux)

    # ----- inference with a cache -----------------------------------------------------------------
    def init_cache(self, batch: int, max_len: int, dtype: torch.dtype | None = None) -> list[Any]:
        """Per-sublayer decode state; `dtype` for the KV cache and conv inputs (recurrent states stay fp32)."""
        p = self.embed.weight
        return [b.sublayer.init_state(batch, max_len, p.device, dtype or p.dtype) for b in self.blocks]

    @torch.no_grad()
    def prefill(self, idx: torch.Tensor, cache: list[Any]) -> torch.Tensor:
        """Run the parallel path over idx [B, T], continuing from and updating `cache`."""
        x = self.embed(idx)
        for block, state in zip(self.blocks, cache):
            x = block(x, state)
        return self.lm_head(self.norm_f(x))

    @torch.no_grad()
    def step(self, token: torch.Tensor, cache: list[Any], compiled: str | None = None) -> torch.Tensor:
        """token [B] -> next-token logits [B, V], updating `cache` (the step path, one token).

        `compiled` names a torch.compile backend ("inductor") that runs each block's step: the many small
        ops of a decode step (norms, gates, the conv's window) fused into a few kernels. Blocks of one kind
        and width share one compiled step, as `compile_blocks` shares their forward.
        """
        block_step = Block.step if compiled is None else compiled_block_step(compiled)
        x = self.embed(token)
        for block, state in zip(self.blocks, cache):
            x = block_step(block, x, state)
        return self.lm_head(self.norm_f(x))


def compile_blocks(model: HybridLM, backend: str = "inductor") -> HybridLM:
    """Compile each block of `model` in place (regional compilation), at static shapes; returns `model`.

    Blocks of one kind and width share one compiled graph: all the Mamba-2 blocks of a proxy compile once,
    and so do those of the next model of that width in the same process (a trial's task models, the next
    trial's), while Inductor's on-disk cache serves the other workers. A whole-model compile would trace
    every layer and start over for each new pattern. Each new sequence length compiles again, not as a
    dynamic-shape graph. `uncompile_blocks` puts the eager blocks back for timing prefill (at lengths the
    training never compiled); decoding has its own compiled step (`HybridLM.step(..., compiled=...)`).
    """
    # every block kind x length x grad mode is an entry of Block.forward's cache: a study's trials need more
    # than the default 8 before they would fall back to eager
    _raise_recompile_limits()
    for block in model.blocks:
        block.compile(backend=backend, dynamic=False)
    return model


def _raise_recompile_limits() -> None:
    """Room in dynamo's caches for every block kind, width and shape a process compiles (the defaults, 8 per
    function, would send a study's later trials back to eager)."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 256)
    dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, 4096)


@functools.cache
def compiled_block_step(backend: str = "inductor"):
    """`Block.step` under torch.compile at static shapes, one for the process: its graphs are keyed by the
    block's kind, width and cache shapes, so every model decoding in the process reuses them."""
    _raise_recompile_limits()  # kinds x widths x cache shapes
    return torch.compile(Block.step, backend=backend, dynamic=False)


def uncompile_blocks(model: HybridLM) -> HybridLM:
    """`model` with the eager blocks back (undoes `compile_blocks`)."""
    for block in model.blocks:
        block._compiled_call_impl = None
    return model


class GraphDecoder:
    """Greedy decoding with the step path captured once as a CUDA graph and replayed per token.

    Eager decoding of a small proxy is bound by kernel launches (hundreds per token), which hides what
    decoding costs; a replayed graph launches them all at once, so attention's reads of its KV cache
    and an SSM's fixed-size state update are what the clock sees. The cache is updated in place, so
    the graph keeps pointing at it.

        decoder = GraphDecoder(model, cache, first_token)   # after model.prefill(prompt, cache)
        decoder.advance(n)                                  # n more tokens; decoder.token holds the last
    """

    def __init__(self, model: HybridLM, cache: list[Any], token: torch.Tensor, warmup: int = 2,
                 compiled: str | None = None):
        """`compiled`: a torch.compile backend for the blocks' step (see `HybridLM.step`), compiled during
        the warm-up, before the capture."""
        self.token = token.clone()
        snapshot = [_snapshot(state) for state in cache]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # allocations and lazy inits happen outside the capture
            for _ in range(warmup):
                self.token.copy_(model.step(self.token, cache, compiled).argmax(-1))
        torch.cuda.current_stream().wait_stream(stream)
        for state, saved in zip(cache, snapshot):
            _restore(state, saved)
        self.token.copy_(token)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = model.step(self.token, cache, compiled)
            self.token.copy_(self.logits.argmax(-1))

    def advance(self, n: int) -> torch.Tensor:
        for _ in range(n):
            self.graph.replay()
        return self.token


def _snapshot(state: Any) -> dict[str, torch.Tensor] | None:
    if state is None:
        return None
    return {k: v.clone() for k, v in vars(state).items()}


def _restore(state: Any, saved: dict[str, torch.Tensor] | None) -> None:
    if state is not None:
        for k, v in saved.items():
            getattr(state, k).copy_(v)


def build_model(cfg: ArchConfig) -> HybridLM:
    return HybridLM(cfg)
