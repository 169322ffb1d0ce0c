"""Scoring a trained proxy: validation loss, task accuracy, prefill and decode throughput, memory."""

from __future__ import annotations

import copy
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from search_spaces.cost import cache_bytes
from workers import turns
from workers.data.corpus import Corpus
from workers.models import GraphDecoder, HybridLM
from workers.result import Throughput
from workers.train import autocast

__all__ = ["lm_val_loss", "peak_memory", "serving_copy", "task_scores", "throughput"]


@torch.no_grad()
def lm_val_loss(model: HybridLM, corpus: Corpus, tokens: int, batch_size: int, seq_len: int,
                device: torch.device) -> float:
    """Mean next-token cross-entropy (nats) over the first `tokens` validation tokens."""
    model.eval()
    total, n = 0.0, 0
    for x, y in corpus.val_batches(tokens, batch_size, seq_len):
        turns.step()
        with autocast(device):
            logits = model(x.to(device)).logits
        total += F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten(), reduction="sum").item()
        n += y.numel()
    return total / n


@torch.no_grad()
def task_scores(model: HybridLM, batches, device: torch.device) -> tuple[float, float]:
    """(accuracy, loss) over scored positions (targets != -100) of `batches`."""
    model.eval()
    correct = scored = 0
    loss_sum = 0.0
    for x, y in batches:
        turns.step()
        x, y = x.to(device), y.to(device)
        with autocast(device):
            logits = model(x).logits.float()
        mask = y != -100
        correct += (logits.argmax(-1)[mask] == y[mask]).sum().item()
        scored += mask.sum().item()
        loss_sum += F.cross_entropy(logits[mask], y[mask], reduction="sum").item()
    return correct / max(1, scored), loss_sum / max(1, scored)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def throughput(model: HybridLM, contexts: list[int], batch_size: int, decode_tokens: int, repeats: int,
               device: torch.device, compiled: str | None = None) -> list[Throughput]:
    """Prefill tokens/s over a prompt of T tokens, then decode tokens/s for tokens T+1.. (step path, cache).

    On a GPU the model serves as it would be deployed: a bf16 copy of its weights (training keeps fp32
    masters, and autocast would read and cast them at every step), and the decode step captured once as
    a CUDA graph and replayed (see `GraphDecoder`), so the figure is the step's own cost rather than
    Python's launch overhead; `compiled` (a torch.compile backend) also fuses each block's step first
    (on a GPU only: the CPU decodes op by op).
    The median of `repeats` runs at each context, after one warm-up run at that context: the first run
    at a new length compiles and tunes kernels for its shapes, which is neither timed nor done with the
    device held alone.
    """
    model = serving_copy(model, device)
    vocab = model.cfg.vocab_size
    gen = torch.Generator().manual_seed(0)
    out = []
    for T in sorted(contexts):
        _prefill_and_decode(model, vocab, batch_size, T, decode_tokens, gen, device, compiled)  # warm-up, shared
        prefill, decode = [], []
        for _ in range(repeats):
            # timed runs with the device to this trial alone (the host's other trials wait: workers/turns.py)
            with turns.alone():
                p, d = _prefill_and_decode(model, vocab, batch_size, T, decode_tokens, gen, device, compiled)
            prefill.append(p)
            decode.append(d)
        out.append(Throughput(
            context=T,
            prefill_tokens_per_s=statistics.median(prefill),
            decode_tokens_per_s=statistics.median(decode),
            kv_state_bytes=cache_bytes(model.cfg, T).total,
        ))
    return out


def serving_copy(model: HybridLM, device: torch.device) -> HybridLM:
    """The model as it would be served, in eval mode: on a GPU a bf16 copy of its weights (training keeps fp32
    masters, which autocast would read and cast at every decode step), on the CPU the model itself."""
    if device.type == "cuda":
        model = copy.deepcopy(model).to(torch.bfloat16)
    return model.eval()


def _prefill_and_decode(model: HybridLM, vocab: int, batch_size: int, T: int, decode_tokens: int,
                        gen: torch.Generator, device: torch.device, compiled: str | None) -> tuple[float, float]:
    """One run: (prefill tokens/s over a random prompt of T tokens, decode tokens/s after it)."""
    prompt = torch.randint(0, vocab, (batch_size, T), generator=gen).to(device)
    cache = model.init_cache(batch_size, T + decode_tokens,
                             torch.bfloat16 if device.type == "cuda" else None)  # as autocast computes
    _sync(device)
    t0 = time.perf_counter()
    with autocast(device):
        logits = model.prefill(prompt, cache)
    _sync(device)
    prefill_s = time.perf_counter() - t0
    token = logits[:, -1].argmax(-1)
    with autocast(device):
        if device.type == "cuda":
            decoder = GraphDecoder(model, cache, token, compiled=compiled)  # captured outside the timed region
            _sync(device)
            t0 = time.perf_counter()
            decoder.advance(decode_tokens)
        else:
            t0 = time.perf_counter()
            for _ in range(decode_tokens):
                token = model.step(token, cache).argmax(-1)
        _sync(device)
    return batch_size * T / prefill_s, batch_size * decode_tokens / (time.perf_counter() - t0)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """Peak bytes allocated on the GPU since the last reset, or the process's peak resident set on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss * (1 if sys.platform == "darwin" else 1024), "cpu_rss"
