"""Seed noise: how far a study's scores move between seeds, and whether the seeds rank alike.

    nas seeds my-study

A search or fidelity study with `seeds: N` (N ≥ 2) trains every architecture once per seed and keeps each
seed's metrics (`record.SEED_METRICS`); an ablation with `seeds: N` trains each cell once per seed as
trials of its own. For every metric, over the architectures (or cells) with two seeds or more:

- the standard deviation over seeds (the median over architectures), absolute and relative to the value;
- how far apart the architectures are against that noise: the standard deviation of the architectures'
  means over the root-mean-square seed deviation (below ~1, a ranking by this metric is mostly luck);
- Kendall's τ between the rankings that each pair of seeds gives the architectures (their mean and the
  lowest pair): 1 when every seed orders the architectures alike.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from search_spaces.config import ConfigError

__all__ = ["SeedRow", "SeedValues", "arch_spreads", "default_metrics", "seed_report", "seed_rows", "seed_values"]


@dataclass(frozen=True)
class SeedRow:
    metric: str
    archs: int  # architectures (or ablation cells) with two seeds or more
    seeds: int  # the most seeds any of them has
    mean: float  # the mean over architectures of their mean over seeds
    sd: float  # the median over architectures of the standard deviation over seeds
    rel_sd: float  # the median over architectures of sd / |mean|
    separation: float  # sd of the architectures' means ÷ the root-mean-square seed sd
    tau: float  # mean Kendall τ between the rankings of two seeds (nan below 3 architectures)
    tau_min: float  # the lowest pair's


@dataclass(frozen=True)
class SeedValues:
    """A study's units (an architecture's trial, or an ablation cell) with two seeds or more."""

    study: str
    objectives: list[str]
    labels: dict[str, str]  # unit -> what a table calls it
    values: dict[str, dict[int, dict[str, float]]]  # unit -> seed -> that seed's metrics


def seed_values(url: str, study: str) -> SeedValues:
    """Read the study's units with two seeds or more. Raises ConfigError when there are none."""
    from nas.reader import seed_metrics, study_frame

    meta, df = study_frame(url, study)
    labels: dict[str, str] = {}
    values: dict[str, dict[int, dict[str, float]]] = {}
    if meta.kind == "ablation" and "p.seed" in df:
        done = df[df["status"] == "complete"]
        factors = [c for c in done.columns if c.startswith("p.") and c != "p.seed"]
        metric_cols = [c for c in done.columns if c.startswith("m.")]
        for cell, group in done.groupby(factors, dropna=False, sort=True) if factors else [((), done)]:
            if group["p.seed"].nunique() < 2:
                continue
            key = ", ".join(f"{f[2:]}={v}" for f, v in zip(factors, cell if isinstance(cell, tuple) else (cell,),
                                                            strict=True))
            labels[key] = key or "base"
            values[key] = {int(s): {c[2:]: float(r[c]) for c in metric_cols if math.isfinite(r[c])}
                           for s, (_, r) in zip(group["p.seed"], group.iterrows(), strict=True)}
    else:
        patterns = dict(zip(df["number"], df["pattern"], strict=True))
        for n, by_seed in seed_metrics(url, study).items():
            labels[str(n)] = f"{n} {patterns.get(n) or ''}".strip()
            values[str(n)] = by_seed
    if not values:
        raise ConfigError(
            f"study {study!r} has no complete trial trained with two seeds or more; give its spec `seeds: 3` "
            "(a search trains each architecture once per seed, an ablation each cell) and run it"
        )
    return SeedValues(study, list(meta.metrics), labels, values)


def default_metrics(objectives: list[str], values: dict[str, dict[int, dict[str, float]]]) -> list[str]:
    """The study's objectives, then the quality metrics: LM loss, the synthetic mean, each task's accuracy."""
    present = set.union(*(set(m) for by_seed in values.values() for m in by_seed.values()))
    quality = ["lm_loss", "synthetic_accuracy", *sorted(m for m in present if m.startswith("acc."))]
    return [m for m in dict.fromkeys([*objectives, *quality]) if m in present]


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import kendalltau

    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(kendalltau(x, y).statistic)


def _per_unit(metric: str, values: dict[str, dict[int, dict[str, float]]]) -> dict[str, dict[int, float]]:
    """unit -> seed -> the metric's value, for the units where two seeds or more have a finite one."""
    per_unit = {u: {s: m[metric] for s, m in by_seed.items() if metric in m and math.isfinite(m[metric])}
                for u, by_seed in values.items()}
    return {u: v for u, v in per_unit.items() if len(v) >= 2}


def _row(metric: str, values: dict[str, dict[int, dict[str, float]]]) -> SeedRow | None:
    per_unit = _per_unit(metric, values)
    if not per_unit:
        return None
    means = np.array([np.mean(list(v.values())) for v in per_unit.values()])
    sds = np.array([np.std(list(v.values()), ddof=1) for v in per_unit.values()])
    rel = sds / np.where(means == 0, np.nan, np.abs(means))
    noise = math.sqrt(float(np.mean(sds**2)))
    between = float(np.std(means, ddof=1)) if len(means) > 1 else float("nan")
    seeds = sorted(set().union(*(v.keys() for v in per_unit.values())))
    taus = []
    for a, b in itertools.combinations(seeds, 2):
        both = [v for v in per_unit.values() if a in v and b in v]
        taus.append(_tau(np.array([v[a] for v in both]), np.array([v[b] for v in both])))
    taus = [t for t in taus if math.isfinite(t)]
    return SeedRow(
        metric=metric,
        archs=len(per_unit),
        seeds=max(len(v) for v in per_unit.values()),
        mean=float(means.mean()),
        sd=float(np.median(sds)),
        rel_sd=float(np.nanmedian(rel)) if np.isfinite(rel).any() else float("nan"),
        separation=between / noise if noise > 0 else float("inf") if between > 0 else float("nan"),
        tau=float(np.mean(taus)) if taus else float("nan"),
        tau_min=float(min(taus)) if taus else float("nan"),
    )


def seed_rows(data: SeedValues, metrics: list[str] | None = None) -> list[SeedRow]:
    """Per metric (`metrics`, or `default_metrics`): its seed spread and the seeds' rank agreement."""
    chosen = metrics or default_metrics(data.objectives, data.values)
    rows = [_row(m, data.values) for m in chosen]
    missing = [m for m, r in zip(chosen, rows, strict=True) if r is None]
    if metrics and missing:
        raise ConfigError(f"no trial of {data.study!r} has {missing[0]!r} from two seeds; its metrics: "
                          f"{', '.join(default_metrics([], data.values))}")
    kept = [r for r in rows if r is not None]
    if not kept:
        raise ConfigError(f"no quality metric of {data.study!r} has finite values from two seeds; name one with "
                          "--metric")
    return kept


def seed_report(url: str, study: str, metrics: list[str] | None = None) -> list[SeedRow]:
    """`seed_rows` of the study in storage `url`."""
    return seed_rows(seed_values(url, study), metrics)


def arch_spreads(data: SeedValues, metrics: list[str]) -> list[tuple[str, dict[str, tuple[float, float, int]]]]:
    """Each unit: its label and, per metric, the mean over its seeds, their standard deviation and how many
    seeds had it."""
    per_metric = {m: _per_unit(m, data.values) for m in metrics}
    out = []
    for unit, label in data.labels.items():
        cells = {}
        for m, per_unit in per_metric.items():
            if unit in per_unit:
                xs = list(per_unit[unit].values())
                cells[m] = (float(np.mean(xs)), float(np.std(xs, ddof=1)), len(xs))
        out.append((label, cells))
    return out
