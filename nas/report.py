"""The report of an ablation study: each factor level's effect on each objective, with its uncertainty.

    for row in ablation_report(url, "pos-and-ssm"):
        print(row.factor, row.level, row.metric, row.mean, row.ci, row.diff, row.diff_ci)

For each factor and level: each objective's mean over the complete runs with that level (every cell of
the grid that has it, every seed) and its 95% confidence interval (Student's t), and the difference from
the base architecture's own level of that factor with its interval (Welch's t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nas.ablation import base_arch, base_level
from nas.reader import study_frame
from nas.spec import StudySpec
from workers.profile import load_profile

__all__ = ["FactorLevel", "ablation_report"]


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


def ablation_report(url: str, name: str) -> list[FactorLevel]:
    meta, df = study_frame(url, name)
    spec = StudySpec.model_validate(meta.spec)
    base = base_arch(spec, load_profile(spec.profile))
    done = df[df["status"] == "complete"]
    rows = []
    for factor, levels in spec.ablation.factors.items():
        own = base_level(base, factor)
        column = done[f"p.{factor}"].tolist() if f"p.{factor}" in done else [None] * len(done)
        for metric in spec.metrics:
            values = done[metric].tolist()
            by_level = {repr(lv): [v for v, x in zip(values, column) if x == lv] for lv in levels}
            ref = by_level.get(repr(own), [])
            for lv in levels:
                xs = by_level[repr(lv)]
                if not xs:
                    continue
                m, ci = _mean_ci(xs)
                diff = diff_ci = None
                if ref and lv != own:
                    diff, diff_ci = _welch(xs, ref)
                rows.append(FactorLevel(factor, lv, lv == own, metric, len(xs), m, ci, diff, diff_ci))
    return rows
