"""Ablations: a base architecture, factors that change one thing each, a grid over them, seeds.

    kind: ablation
    ablation:
      base: jamba                      # a preset (scaled to the profile's size), a YAML path, or inline
      factors:
        pos: [rope, nope]              # attention's positional encoding
        ssm: [mamba1, mamba2, mlstm, deltanet, kda, shortconv]   # every SSM layer becomes this family
        mamba2.d_state: [16, 64]       # any option, by its dotted path
      seeds: 3

Every cell of the grid (each combination of levels) trains once per seed. This module is the design:
which architecture each cell trains. Its report (means, intervals, differences from the base) is
`nas.report`.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from search_spaces import ArchConfig
from search_spaces.arch import OPTION_TYPES
from search_spaces.config import ConfigError
from search_spaces.pattern import FAMILIES
from search_spaces.presets import preset
from search_spaces.space import SSM_OPTIONS, ssm_of
from search_spaces.space import SSM_SYMBOL as SSM

__all__ = ["ablation_arch", "ablation_archs", "ablation_grid", "base_arch", "base_level", "suggest_cell"]

SPECIAL = ("pos", "ssm")


def base_arch(spec, profile) -> ArchConfig:
    base = spec.ablation.base
    if isinstance(base, dict):
        return ArchConfig.from_dict(base)
    if Path(base).suffix in (".yaml", ".yml", ".json"):
        return ArchConfig.load(base)
    return preset(base, profile.params, vocab_size=profile.lm.vocab_size or 256)


def base_level(base: ArchConfig, factor: str) -> Any:
    """The base architecture's own level of `factor` (the level the others are compared with)."""
    if factor == "pos":
        return base.attention.pos if base.attention else None
    if factor == "ssm":
        return ssm_of(base)
    family, _, key = factor.partition(".")
    group = getattr(base, family, None)
    return getattr(group, key) if group is not None else None


def _apply(arch: ArchConfig, factor: str, level: Any) -> ArchConfig:
    if factor == "pos":
        if arch.attention is None:
            raise ConfigError("factor pos needs attention ('*') in the base architecture")
        if level not in ("rope", "nope"):
            raise ConfigError(f"factor pos has level {level!r}; use rope or nope")
        return arch.replace(attention={"pos": level})
    if factor == "ssm":
        if level not in SSM:
            raise ConfigError(f"factor ssm has level {level!r}; use {', '.join(SSM)}")
        if not any(s in arch.pattern for s in SSM.values()):
            raise ConfigError("factor ssm needs SSM layers (M, m, X, D or C) in the base architecture")
        pattern = "".join(SSM[level] if ch in SSM.values() else ch for ch in arch.pattern)
        return arch.replace(pattern=pattern, **SSM_OPTIONS.get(level, {}))
    family, _, key = factor.partition(".")
    if family not in OPTION_TYPES or key not in OPTION_TYPES[family].model_fields:
        raise ConfigError(f"unknown ablation factor {factor!r}; use pos, ssm or an option path like mamba2.d_state")
    if FAMILIES[family] not in arch.pattern:
        raise ConfigError(f"factor {factor!r} changes {family}, which the base architecture does not have")
    return arch.replace(**{family: {key: level}})


def ablation_arch(spec, profile, values: dict[str, Any]) -> ArchConfig:
    arch = base_arch(spec, profile)
    for factor in spec.ablation.factors:
        arch = _apply(arch, factor, values[factor])
    return arch


def ablation_grid(spec) -> dict[str, list]:
    return {
        **{f: list(levels) for f, levels in spec.ablation.factors.items()},
        "seed": list(range(spec.ablation.seeds)),
    }


def suggest_cell(spec, trial) -> dict[str, Any]:
    values = {f: trial.suggest_categorical(f, levels) for f, levels in spec.ablation.factors.items()}
    values["seed"] = trial.suggest_categorical("seed", list(range(spec.ablation.seeds)))
    return values


def ablation_archs(spec, profile) -> list[ArchConfig]:
    """Every cell's architecture (checks the ablation before a study exists)."""
    factors = spec.ablation.factors
    out = []
    for combo in itertools.product(*factors.values()):
        out.append(ablation_arch(spec, profile, dict(zip(factors, combo))))
    return out
