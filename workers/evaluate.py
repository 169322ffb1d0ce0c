"""One trial: train the proxy of an architecture under a profile and score it (`evaluate` → `TrialResult`).

    result = evaluate(preset("jamba", 2e5, vocab_size=256), "cpu-tiny", progress=print)

The LM run trains on the corpus, then the trained model's validation loss and its prefill / decode
throughput are measured. Each synthetic task trains a fresh copy of the architecture (same seed) on
that task alone, as in MAD, and is scored on held-out examples. A diverging loss or a GPU out of
memory after every retry ends the trial as failed, with what was measured up to then.

An early-stopping rung below the full budget only ranks trials by the study's objectives, so it may ask
for some `parts` alone (`workers.result.parts_for`): a study of recall against decoding speed skips the
LM run at its lower rungs and times a freshly built model (speed does not depend on the weights).
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import time
from collections.abc import Callable, Collection
from pathlib import Path

import torch

from search_spaces import ArchConfig
from search_spaces.config import ConfigError
from search_spaces.cost import param_counts
from workers import turns
from workers.data.corpus import CorpusError, load_corpus
from workers.data.synthetic import make_task
from workers.models import build_model, compile_blocks, uncompile_blocks
from workers.profile import ProxyProfile, load_profile
from workers.result import Failure, LMScore, TaskScore, Throughput, TrialResult
from workers.score import lm_val_loss, peak_memory, task_scores, throughput
from workers.train import Progress, TrialFailed, train

__all__ = ["evaluate", "resolve_device", "versions"]

ProgressFn = Callable[[Progress], None]


def resolve_device(profile: ProxyProfile, device: str | torch.device | None = None) -> torch.device:
    want = str(device) if device is not None else profile.device
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"profile {profile.name!r} asks for device {want!r} but this machine has no CUDA GPU; "
            "use device: auto or cpu"
        )
    return torch.device(want)


def versions() -> dict[str, str | None]:
    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=Path(__file__).parent,
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "hybrid-nas": dist("hybrid-nas"),
        "commit": commit,
        "torch": torch.__version__,
        "triton": dist("triton"),
        "python": platform.python_version(),
    }


def _check_vocab(arch: ArchConfig, vocab: int, what: str) -> None:
    if arch.vocab_size < vocab:
        raise ConfigError(
            f"the architecture's vocab_size={arch.vocab_size} is smaller than the {what}'s {vocab} tokens; "
            f"set vocab_size: {vocab} (or more)"
        )


def _memory_share(dev: torch.device) -> str:
    """", within its share of N GiB of the GPU" where the process holds a fraction of the GPU's memory."""
    if dev.type != "cuda":
        return ""
    total = torch.cuda.get_device_properties(dev).total_memory
    fraction = getattr(torch.cuda, "get_per_process_memory_fraction", lambda _: 1.0)(dev)
    return f", within its share of {fraction * total / 2**30:.0f} GiB of the GPU" if fraction < 1 else ""


def _language_model(model, corpus, lm_cfg, seed: int, common: dict) -> LMScore:
    """Train `model` on the corpus, then score it on the validation split."""
    gen = torch.Generator().manual_seed(seed)
    stats = train(
        model,
        lambda n: corpus.batch(n, lm_cfg.seq_len, gen),
        task="lm",
        tokens=lm_cfg.tokens,
        batch_size=lm_cfg.batch_size,
        seq_len=lm_cfg.seq_len,
        optim=lm_cfg.optim,
        micro_batch_size=lm_cfg.micro_batch_size,
        **common,
    )
    val_loss = lm_val_loss(model, corpus, lm_cfg.eval_tokens, stats.micro_batch_size, lm_cfg.seq_len, common["device"])
    return LMScore(
        val_loss=val_loss,
        bits_per_byte=val_loss / torch.log(torch.tensor(2.0)).item() if corpus.bytes_per_token == 1.0 else None,
        tokens=stats.tokens,
        steps=stats.steps,
        seconds=stats.seconds,
        train_tokens_per_s=stats.tokens_per_s,
        curve=stats.curve,
    )


def _synthetic_task(model, spec, task, syn, seed: int, common: dict) -> TaskScore:
    """Train `model` on one synthetic task alone, then score it on held-out examples."""
    train_gen = torch.Generator().manual_seed(seed)
    stats = train(
        model,
        lambda n: task.batch(n, train_gen, train=True),
        task=spec.name,
        tokens=spec.tokens or syn.tokens_per_task,
        batch_size=syn.batch_size,
        seq_len=task.seq_len,
        optim=syn.optim,
        micro_batch_size=syn.micro_batch_size,
        **common,
    )
    eval_gen = torch.Generator().manual_seed(task.eval_seed(seed))
    n_eval = syn.eval_examples
    batches = (
        task.batch(min(stats.micro_batch_size, n_eval - i), eval_gen)
        for i in range(0, n_eval, stats.micro_batch_size)
    )
    acc, loss = task_scores(model, batches, common["device"])
    return TaskScore(
        accuracy=acc,
        val_loss=loss,
        tokens=stats.tokens,
        steps=stats.steps,
        seconds=stats.seconds,
        settings=task.settings(),
        curve=stats.curve,
    )


def evaluate(
    arch: ArchConfig,
    profile: ProxyProfile | str,
    *,
    seed: int | None = None,
    budget: float = 1.0,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
    throughput_of: list[Throughput] | None = None,
    parts: Collection[str] | None = None,
) -> TrialResult:
    """Train and score `arch` under `profile`; `budget` scales every token budget (early-stopping rungs).

    `throughput_of`: the architecture's prefill/decode figures measured already (by an earlier rung or
    seed of the same trial on the same kind of device): used as they are instead of measuring again; speed
    depends on the architecture and the device, not on how far the weights were trained.

    `parts`: run only these ("lm", "throughput", task names); None runs everything.

    Raises ConfigError before any training for an unusable architecture, profile or corpus; returns a
    failed TrialResult (status "failed", with the reason and step) for a run that diverges or runs out of memory.
    """
    t0 = time.perf_counter()
    profile = load_profile(profile)
    if budget != 1.0:
        profile = profile.scaled(budget)
    dev = resolve_device(profile, device)
    seed = profile.seed if seed is None else seed
    lm_cfg, syn = profile.lm, profile.synthetic
    try:
        corpus = load_corpus(lm_cfg.corpus, lm_cfg.vocab_size, lm_cfg.val_fraction)
        tasks = [(spec, make_task(spec.name, **spec.settings)) for spec in syn.tasks
                 if parts is None or spec.name in parts]
    except (CorpusError, ValueError) as e:
        raise ConfigError(str(e)) from None
    _check_vocab(arch, corpus.vocab_size, f"corpus {corpus.name}")
    for spec, task in tasks:
        _check_vocab(arch, task.vocab_size, f"task {spec.name}")

    pc = param_counts(arch)
    result: dict = {
        "status": "ok",
        "arch": arch.to_dict(),
        "pattern": arch.pattern,
        "profile": profile.name,
        "budget": budget,
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "params": pc.total,
        "active_params": pc.active,
        "seeds": {"model": seed, "data": seed},
        "corpus": {"name": corpus.name, **corpus.fingerprint},
        "versions": versions(),
    }
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def fresh_model():
        torch.manual_seed(seed)
        model = build_model(arch).to(dev)
        return compile_blocks(model) if profile.compile else model

    common = dict(
        device=dev,
        min_micro_batch_size=profile.min_micro_batch_size,
        progress=progress,
        progress_every=profile.progress_every,
    )
    with turns.running(dev):  # shared with the host's other trials; speed is timed alone
        try:
            # ---- language modelling, then the trained model's throughput
            lm, speed = (parts is None or p in parts for p in ("lm", "throughput"))
            model = fresh_model() if lm or (speed and not throughput_of) else None
            if lm:
                result["lm"] = _language_model(model, corpus, lm_cfg, seed, common)
            if speed:
                tp = profile.throughput
                result["throughput"] = throughput_of or throughput(
                    uncompile_blocks(model), tp.contexts, tp.batch_size, tp.decode_tokens, tp.repeats, dev,
                    compiled="inductor" if profile.compile else None,  # a compiled step under the CUDA graph
                )
            del model
            # ---- each synthetic task on a fresh model
            for spec, task in tasks:
                result.setdefault("tasks", {})[spec.name] = _synthetic_task(fresh_model(), spec, task, syn, seed,
                                                                           common)
            if tasks and len(tasks) == len(syn.tasks):
                result["synthetic_accuracy"] = sum(t.accuracy for t in result["tasks"].values()) / len(tasks)
        except TrialFailed as e:
            result["status"] = "failed"
            result["failure"] = Failure(kind=e.kind, reason=e.reason, step=e.step, task=e.task)
        except torch.OutOfMemoryError:  # outside the training steps, which retry with smaller micro-batches
            share = _memory_share(dev)
            result["status"] = "failed"
            result["failure"] = Failure(
                kind="oom",
                reason=f"out of memory building, evaluating or timing the model{share}; use a smaller proxy "
                "(params, seq_len, the throughput contexts) or give each trial more of the GPU (resources.gpus)",
            )
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    result["peak_memory_bytes"], result["memory_kind"] = peak_memory(dev)
    result["wall_seconds"] = time.perf_counter() - t0
    return TrialResult(**result)
