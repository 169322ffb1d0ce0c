"""`TrialResult`: everything one proxy evaluation measured, JSON-serialisable.

`TrialResult.metrics()` flattens it into the named numbers that studies optimise and MLflow records:

| metric | meaning | better |
|---|---|---|
| `lm_loss` | validation cross-entropy (nats per token) | lower |
| `bpb` | validation bits per byte (byte-level corpora) | lower |
| `synthetic_accuracy` | mean accuracy over the profile's synthetic tasks | higher |
| `acc.<task>` | accuracy on one synthetic task | higher |
| `train_tps` | training tokens/s of the LM run | higher |
| `prefill_tps.<T>`, `decode_tps.<T>` | tokens/s at context T (step path with cache for decode) | higher |
| `prefill_tps`, `decode_tps` | the same at the profile's largest context | higher |
| `kv_state_bytes.<T>`, `kv_state_bytes` | analytic KV cache + recurrent state per sequence | lower |
| `params`, `active_params` | parameter counts | lower |
| `peak_memory` | peak bytes allocated (GPU) or resident (CPU) while training | lower |
| `wall_seconds` | the whole evaluation | lower |
"""

from __future__ import annotations

import statistics
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "METRICS",
    "Failure",
    "LMScore",
    "TaskScore",
    "Throughput",
    "TrialResult",
    "mean_metrics",
    "metric_direction",
    "parts_for",
    "spread_metrics",
]

# A name is a base metric, optionally qualified after a dot by a context length or a task
# (`decode_tps.16384`, `acc.mqar`): names valid in Optuna, MLflow and a YAML spec alike.
# base metric -> direction of improvement
METRICS: dict[str, Literal["minimize", "maximize"]] = {
    "lm_loss": "minimize",
    "bpb": "minimize",
    "synthetic_accuracy": "maximize",
    "acc": "maximize",
    "train_tps": "maximize",
    "prefill_tps": "maximize",
    "decode_tps": "maximize",
    "kv_state_bytes": "minimize",
    "params": "minimize",
    "active_params": "minimize",
    "peak_memory": "minimize",
    "wall_seconds": "minimize",
}


# what part of an evaluation produces each base metric: the LM run, the speed measurement, every task
# (`acc.<task>`: that task alone), nothing (the cost model's counts), or everything (None)
_PART: dict[str, str | None] = {
    "lm_loss": "lm", "bpb": "lm", "train_tps": "lm",
    "prefill_tps": "throughput", "decode_tps": "throughput", "kv_state_bytes": "throughput",
    "synthetic_accuracy": "tasks", "acc": "tasks",
    "params": "", "active_params": "",
    "peak_memory": None, "wall_seconds": None,
}


def parts_for(metrics: list[str], tasks: list[str]) -> tuple[str, ...] | None:
    """The parts of an evaluation that `metrics` read: "lm" (the language-modelling run), "throughput",
    and task names; None when one of them needs the whole evaluation (peak memory, wall time).

        parts_for(["acc.mqar", "decode_tps"], ["mqar", "in_context_recall"])  # ("mqar", "throughput")
    """
    out: set[str] = set()
    for m in metrics:
        base, _, qualifier = m.partition(".")
        part = _PART[base]
        if part is None:
            return None
        if part == "tasks":
            out.update([qualifier] if base == "acc" and qualifier else tasks)
        elif part:
            out.add(part)
    return tuple(sorted(out))


def metric_direction(name: str) -> Literal["minimize", "maximize"]:
    """The direction in which `name` improves; KeyError for a name no TrialResult produces."""
    return METRICS[name.split(".", 1)[0]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Failure(_Model):
    kind: Literal["diverged", "oom", "invalid", "error", "worker_died", "infeasible", "pruned"]
    reason: str
    step: int | None = None
    task: str | None = None


class LMScore(_Model):
    val_loss: float
    bits_per_byte: float | None  # None for token corpora, whose tokens are not bytes
    tokens: int
    steps: int
    seconds: float
    train_tokens_per_s: float
    curve: list[tuple[int, int, float]] = []  # (step, tokens, training loss)


class TaskScore(_Model):
    accuracy: float
    val_loss: float
    tokens: int
    steps: int
    seconds: float
    settings: dict[str, Any] = {}
    curve: list[tuple[int, int, float]] = []


class Throughput(_Model):
    context: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    kv_state_bytes: int  # analytic, per sequence


class TrialResult(_Model):
    status: Literal["ok", "failed"]
    failure: Failure | None = None
    arch: dict[str, Any]
    pattern: str
    profile: str
    budget: float = 1.0  # fraction of the profile's token budgets (successive-halving rung)
    device: str
    params: int
    active_params: int
    lm: LMScore | None = None
    tasks: dict[str, TaskScore] = {}
    synthetic_accuracy: float | None = None
    throughput: list[Throughput] = []
    peak_memory_bytes: int | None = None
    memory_kind: Literal["cuda_allocated", "cpu_rss"] | None = None
    wall_seconds: float
    seeds: dict[str, int] = {}
    corpus: dict[str, Any] = {}
    versions: dict[str, str | None] = {}

    @property
    def tokens(self) -> int:
        """Tokens trained, language modelling and synthetic tasks together."""
        return (self.lm.tokens if self.lm is not None else 0) + sum(t.tokens for t in self.tasks.values())

    def curves(self) -> dict[str, list[tuple[int, int, float]]]:
        """Training loss curves by task ("lm" first): (step, tokens, loss) each."""
        out = {"lm": self.lm.curve} if self.lm is not None and self.lm.curve else {}
        out.update({name: t.curve for name, t in self.tasks.items() if t.curve})
        return out

    def metrics(self) -> dict[str, float]:
        m: dict[str, float] = {
            "params": float(self.params),
            "active_params": float(self.active_params),
            "wall_seconds": self.wall_seconds,
        }
        if self.lm is not None:
            m["lm_loss"] = self.lm.val_loss
            m["train_tps"] = self.lm.train_tokens_per_s
            if self.lm.bits_per_byte is not None:
                m["bpb"] = self.lm.bits_per_byte
        for name, t in self.tasks.items():
            m[f"acc.{name}"] = t.accuracy
        if self.synthetic_accuracy is not None:
            m["synthetic_accuracy"] = self.synthetic_accuracy
        for t in self.throughput:
            m[f"prefill_tps.{t.context}"] = t.prefill_tokens_per_s
            m[f"decode_tps.{t.context}"] = t.decode_tokens_per_s
            m[f"kv_state_bytes.{t.context}"] = float(t.kv_state_bytes)
        if self.throughput:
            last = max(self.throughput, key=lambda t: t.context)
            m["prefill_tps"] = last.prefill_tokens_per_s
            m["decode_tps"] = last.decode_tokens_per_s
            m["kv_state_bytes"] = float(last.kv_state_bytes)
        if self.peak_memory_bytes is not None:
            m["peak_memory"] = float(self.peak_memory_bytes)
        return m


def _by_metric(results: list[TrialResult]) -> dict[str, list[float]]:
    """Each metric every one of several seeds' results has, with its values in order."""
    each = [r.metrics() for r in results]
    keys = set.intersection(*(set(m) for m in each))
    return {k: [m[k] for m in each] for k in sorted(keys)}


def mean_metrics(results: list[TrialResult]) -> dict[str, float]:
    """Each metric's mean over several seeds' results (the metrics every one of them has)."""
    return {k: sum(xs) / len(xs) for k, xs in _by_metric(results).items()}


def spread_metrics(results: list[TrialResult]) -> dict[str, float]:
    """Each metric's sample standard deviation over several seeds' results (the metrics every one of them
    has); empty for a single seed."""
    if len(results) < 2:
        return {}
    return {k: statistics.stdev(xs) for k, xs in _by_metric(results).items()}
