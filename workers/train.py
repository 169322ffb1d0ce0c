"""The training loop of a proxy: AdamW, warmup then cosine, clipping, micro-batches, a budget in tokens.

A step takes `batch_size` sequences; when `micro_batch_size` is smaller, their gradients accumulate.
Out of GPU memory, a step is retried with half the micro-batch (the same sequences, so the same
effective batch) down to a floor. A loss that turns NaN or infinite ends the run with the step.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from workers import turns
from workers.profile import Optim

__all__ = ["Progress", "TrainStats", "TrialFailed", "autocast", "train"]


@dataclass(frozen=True)
class Progress:
    """What the trainer reports every `progress_every` steps (and at the last one)."""

    task: str  # "lm" or a synthetic task's name
    step: int
    steps: int
    tokens: int
    loss: float  # mean over the steps since the last report
    tokens_per_s: float
    lr: float


class TrialFailed(RuntimeError):
    """A trial that cannot finish: its loss diverged, it ran out of memory, or its input was unusable."""

    def __init__(self, kind: Literal["diverged", "oom", "invalid", "error"], reason: str,
                 step: int | None = None, task: str | None = None):
        super().__init__(reason)
        self.kind, self.reason, self.step, self.task = kind, reason, step, task


@dataclass
class TrainStats:
    task: str
    steps: int
    tokens: int
    seconds: float
    tokens_per_s: float  # after the first step (which pays for compilation and allocation)
    final_loss: float
    micro_batch_size: int
    curve: list[tuple[int, int, float]] = field(default_factory=list)  # (step, tokens, loss)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on the GPU, plain fp32 on the CPU."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _optimizer(model: nn.Module, o: Optim, device: torch.device) -> torch.optim.Optimizer:
    # no decay on norms, biases, decay rates (A_log, dt_bias) and skips (D): they are not weights of a map
    decay, keep = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and not name.endswith("A_log") else keep).append(p)
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": keep, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, fused=device.type == "cuda")


def _lr(step: int, steps: int, o: Optim) -> float:
    warmup = int(o.warmup_fraction * steps)
    if step < warmup:
        return o.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def train(
    model: nn.Module,
    next_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    *,
    task: str,
    tokens: int,
    batch_size: int,
    seq_len: int,
    optim: Optim,
    device: torch.device,
    micro_batch_size: int | None = None,
    min_micro_batch_size: int = 1,
    progress: Callable[[Progress], None] | None = None,
    progress_every: int = 10,
) -> TrainStats:
    """Train `model` on `tokens` tokens of `next_batch(n)` (n sequences: inputs, targets [n, seq_len])."""
    steps = max(1, math.ceil(tokens / (batch_size * seq_len)))
    micro = min(micro_batch_size or batch_size, batch_size)
    opt = _optimizer(model, optim, device)
    model.train()
    curve: list[tuple[int, int, float]] = []
    window: list[torch.Tensor] = []  # per-step losses on the device, read back at each report
    t_start = t_first = time.perf_counter()
    t_report, tokens_report = t_start, 0
    done = 0
    for step in range(steps):
        turns.step()  # give way to a trial on this device that measures its speed
        lr = _lr(step, steps, optim)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = next_batch(batch_size)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        while True:
            try:
                loss = _accumulate(model, x, y, micro, device)
                break
            except RuntimeError as e:
                if not _is_oom(e):
                    raise
                opt.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                if micro // 2 < min_micro_batch_size:
                    raise TrialFailed(
                        "oom",
                        f"out of memory at step {step} of the {task} run even with a micro-batch of {micro} "
                        f"sequences of {seq_len} tokens; use a smaller proxy (params) or seq_len",
                        step,
                        task,
                    ) from None
                micro //= 2
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip)
        window.append(torch.stack([loss, grad_norm.float()]))
        opt.step()
        opt.zero_grad(set_to_none=True)
        done += batch_size * seq_len
        if step == 0:
            t_first, waited_first = time.perf_counter(), turns.waited()
        if (step + 1) % progress_every == 0 or step == steps - 1:
            losses = torch.stack(window).cpu()  # one device sync per report
            bad = (~torch.isfinite(losses)).any(dim=1).nonzero()
            if len(bad):
                at = step - len(window) + 1 + int(bad[0])
                what = "loss" if not torch.isfinite(losses[int(bad[0]), 0]) else "gradient norm"
                raise TrialFailed(
                    "diverged",
                    f"the {task} {what} became {losses[int(bad[0])].tolist()[0 if what == 'loss' else 1]} at step "
                    f"{at} of {steps}; lower the learning rate (now {optim.lr:g}) or the clip threshold",
                    at,
                    task,
                )
            mean = losses[:, 0].mean().item()
            now = time.perf_counter()
            curve.append((step + 1, done, mean))
            if progress is not None:
                progress(Progress(task, step + 1, steps, done, mean, (done - tokens_report) / (now - t_report), lr))
            window, t_report, tokens_report = [], now, done
    seconds = time.perf_counter() - t_start
    busy = time.perf_counter() - t_first - (turns.waited() - waited_first)  # not the seconds spent giving way
    steady = (done - batch_size * seq_len) / busy if steps > 1 else done / seconds
    return TrainStats(task, steps, done, seconds, steady, curve[-1][2], micro, curve)


def _accumulate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, micro: int, device: torch.device) -> torch.Tensor:
    """Forward and backward over micro-batches of x; returns the step's mean loss (on the device)."""
    n = x.shape[0]
    total = torch.zeros((), device=device)
    for i in range(0, n, micro):
        with autocast(device):
            loss = model(x[i : i + micro], y[i : i + micro]).loss
        (loss * (min(micro, n - i) / n)).backward()
        total += loss.detach() * (min(micro, n - i) / n)
    return total
