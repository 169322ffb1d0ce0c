"""Ablations: a base architecture, factors that change one thing each, a grid over them, seeds.

    kind: ablation
    ablation:
      base: jamba                      # a preset (scaled to the profile's size), a YAML path, or inline
      factors:
        pos: [rope, nope]              # attention's positional encoding
        ssm: [mamba1, mamba2, mlstm]   # every SSM layer of the base becomes this family
        mamba2.d_state: [16, 64]       # any option, by its dotted path
      seeds: 3

Every cell of the grid (each combination of levels) trains once per seed. The report gives, for each
factor and level, each objective's mean with a 95% confidence interval (Student's t over the cells'
runs), and the difference from the base's own level of that factor with its interval (Welch).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_spaces import ArchConfig
from search_spaces.arch import OPTION_TYPES, ConfigError
from search_spaces.pattern import FAMILIES

__all__ = ["FactorLevel", "ablation_arch", "ablation_grid", "ablation_report", "base_arch"]

SSM = {"mamba1": "m", "mamba2": "M", "mlstm": "X"}
SPECIAL = ("pos", "ssm")


def base_arch(spec, profile) -> ArchConfig:
    base = spec.ablation.base
    if isinstance(base, dict):
        return ArchConfig.from_dict(base)
    if Path(base).suffix in (".yaml", ".yml", ".json"):
        return ArchConfig.load(base)
    from search_spaces.presets import preset

    return preset(base, profile.params, vocab_size=profile.lm.vocab_size or 256)


def _base_level(base: ArchConfig, factor: str) -> Any:
    if factor == "pos":
        return base.attention.pos if base.attention else None
    if factor == "ssm":
        return next((name for name, sym in SSM.items() if sym in base.pattern), None)
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
            raise ConfigError("factor ssm needs SSM layers (M, m or X) in the base architecture")
        pattern = "".join(SSM[level] if ch in SSM.values() else ch for ch in arch.pattern)
        return arch.replace(pattern=pattern)
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


# ----- the report ---------------------------------------------------------------------------------------
@dataclass
class FactorLevel:
    factor: str
    level: Any
    is_base: bool
    metric: str
    n: int
    mean: float
    ci: float  # half-width of the 95% interval
    diff: float | None  # from the base level
    diff_ci: float | None


def _t(df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, df)) if df > 0 else math.inf


def _mean_ci(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, math.inf
    var = sum((x - m) ** 2 for x in xs) / (n - 1)
    return m, _t(n - 1) * math.sqrt(var / n)


def _welch(a: list[float], b: list[float]) -> tuple[float, float]:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return ma - mb, math.inf
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return ma - mb, 0.0
    df = (va + vb) ** 2 / ((va**2 / (len(a) - 1)) + (vb**2 / (len(b) - 1)))
    return ma - mb, _t(df) * se


def ablation_report(study_or_name, storage: str | None = None) -> list[FactorLevel]:
    from nas.spec import StudySpec
    from nas.study import _open
    from workers.profile import load_profile

    study = _open(study_or_name, storage)
    spec = StudySpec.model_validate(study.user_attrs["spec"])
    base = base_arch(spec, load_profile(spec.profile))
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    rows = []
    for factor, levels in spec.ablation.factors.items():
        base_level = _base_level(base, factor)
        for i, metric in enumerate(spec.metrics):
            by_level = {repr(lv): [t.values[i] for t in done if t.params.get(factor) == lv] for lv in levels}
            ref = by_level.get(repr(base_level), [])
            for lv in levels:
                xs = by_level[repr(lv)]
                if not xs:
                    continue
                m, ci = _mean_ci(xs)
                diff = diff_ci = None
                if ref and lv != base_level:
                    diff, diff_ci = _welch(xs, ref)
                rows.append(FactorLevel(factor, lv, lv == base_level, metric, len(xs), m, ci, diff, diff_ci))
    return rows
