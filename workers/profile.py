"""Proxy profiles: how long and how hard a trial trains, and what it measures. Profiles are data
(`workers/profiles/*.yaml`); `load_profile` takes a name or a path and rejects unknown keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from search_spaces.config import load_named, names_in

__all__ = ["PROFILE_DIR", "LMSettings", "ProxyProfile", "SyntheticSettings", "load_profile", "profile_names"]

PROFILE_DIR = Path(__file__).parent / "profiles"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Optim(_Strict):
    """AdamW with linear warmup then cosine decay to min_lr_ratio·lr; global-norm gradient clipping."""

    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = Field(1.0, gt=0)


class LMSettings(_Strict):
    corpus: str = "stdlib"
    vocab_size: int | None = Field(None, gt=0, description="token files only; text is bytes (256)")
    val_fraction: float = Field(0.05, gt=0, lt=1)
    seq_len: int = Field(256, gt=0)
    batch_size: int = Field(16, gt=0, description="sequences per optimiser step")
    micro_batch_size: int | None = Field(None, gt=0, description="None: the whole batch at once")
    tokens: int = Field(1_000_000, gt=0, description="training budget")
    eval_tokens: int = Field(65_536, gt=0)
    optim: Optim = Optim()


class TaskSpec(_Strict):
    name: str
    settings: dict[str, Any] = {}
    tokens: int | None = Field(None, gt=0, description="None: the suite's tokens_per_task")


class SyntheticSettings(_Strict):
    tasks: list[TaskSpec] = []
    tokens_per_task: int = Field(500_000, gt=0)
    batch_size: int = Field(32, gt=0)
    micro_batch_size: int | None = Field(None, gt=0)
    eval_examples: int = Field(256, gt=0)
    optim: Optim = Optim(lr=1e-3, weight_decay=0.0)


class ThroughputSettings(_Strict):
    contexts: list[int] = Field([1024], min_length=1, description="prefill / decode measured at each")
    batch_size: int = Field(1, gt=0)
    decode_tokens: int = Field(16, gt=0)
    repeats: int = Field(3, gt=0)


class ProxyProfile(_Strict):
    name: str
    description: str = ""
    params: float = Field(gt=0, description="presets are scaled to about this many parameters")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = Field(False, description="train with each block compiled (torch.compile per block, static "
                          "shapes: workers.models.compile_blocks), and on a GPU decode with each block's step "
                          "compiled under the CUDA graph; prefill is timed on the eager blocks")
    seed: int = 0
    min_micro_batch_size: int = Field(1, gt=0, description="out-of-memory retries halve down to this")
    progress_every: int = Field(10, gt=0, description="optimizer steps between progress reports")
    lm: LMSettings = LMSettings()
    synthetic: SyntheticSettings = SyntheticSettings()
    throughput: ThroughputSettings = ThroughputSettings()

    @model_validator(mode="after")
    def _check(self) -> ProxyProfile:
        for section in (self.lm, self.synthetic):
            mb = section.micro_batch_size
            if mb is not None and section.batch_size % mb:
                raise ValueError(
                    f"micro_batch_size={mb} does not divide batch_size={section.batch_size}; "
                    "gradient accumulation needs whole micro-batches"
                )
        return self

    @property
    def largest_context(self) -> int:
        return max(self.throughput.contexts)

    def scaled(self, budget: float) -> ProxyProfile:
        """The same profile with every token budget multiplied by `budget` (successive-halving rungs)."""
        data = self.model_dump()
        data["lm"]["tokens"] = max(1, round(self.lm.tokens * budget))
        data["synthetic"]["tokens_per_task"] = max(1, round(self.synthetic.tokens_per_task * budget))
        for t in data["synthetic"]["tasks"]:
            if t["tokens"] is not None:
                t["tokens"] = max(1, round(t["tokens"] * budget))
        return ProxyProfile.model_validate(data)


def profile_names() -> list[str]:
    return names_in(PROFILE_DIR)


def load_profile(spec: str | Path | dict | ProxyProfile) -> ProxyProfile:
    """A profile by name (`cpu-tiny`), by YAML path, or from a mapping."""
    return load_named(spec, ProxyProfile, PROFILE_DIR, "profile", "name, params, lm, synthetic, throughput")
