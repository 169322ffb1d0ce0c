"""Proxy fidelity: does a study's ranking hold when its architectures are trained larger?

    nas fidelity my-study --profile gpu-small --top 8 --sample 8

re-trains the study's Pareto set (at most `top` trials, best first on the first objective) and a random
sample of its other complete trials at a bigger profile, each architecture resized to that profile's
parameter count by the scaling rule, as a study of its own:

    kind: fidelity
    fidelity:
      source: my-study                 # the study in the same storage whose trials are re-trained
      archs: {"3": {...}, "7": {...}}  # each source trial's architecture, by trial number

It is a grid over the source trials (each trained once per seed), so it resumes like any study. Its
report (`fidelity_report`) gives, for every objective, the Spearman rank correlation between the two
sizes over the pairs, with a bootstrap 95% interval.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np

from search_spaces import ArchConfig
from search_spaces.config import ConfigError
from search_spaces.scaling import scale

__all__ = ["FidelityRow", "choose_trials", "fidelity_arch", "fidelity_grid", "fidelity_report", "fidelity_spec"]

BOOTSTRAP = 2000


def fidelity_arch(spec, profile, values: dict[str, Any]) -> ArchConfig:
    """The source trial's architecture at the profile's size."""
    arch = ArchConfig.from_dict(spec.fidelity.archs[str(values["source"])])
    return scale(arch, profile.params, vocab_size=profile.lm.vocab_size or arch.vocab_size)


def fidelity_grid(spec) -> dict[str, list]:
    return {"source": sorted(int(n) for n in spec.fidelity.archs)}


def choose_trials(url: str, study: str, top: int, sample: int, seed: int = 0) -> list[int]:
    """The Pareto set (its best `top` on the first objective) and `sample` other complete trials drawn at
    random with `seed`, in that order; one trial per architecture (a study trains a repeat only once)."""
    import json

    from nas.reader import pareto_trials, study_frame, trial_archs

    _, df = study_frame(url, study)
    archs = {n: json.dumps(a.to_dict(), sort_keys=True) for n, a in trial_archs(url, study)}
    seen: set[str] = set()

    def first_of_its_arch(numbers: list[int]) -> list[int]:
        kept = []
        for n in numbers:
            if n in archs and archs[n] not in seen:
                seen.add(archs[n])
                kept.append(n)
        return kept

    front = first_of_its_arch([r["trial"] for r in pareto_trials(url, study)])[:top]
    seen = {archs[n] for n in front}  # front architectures past `top` stay eligible for the sample
    complete = sorted(int(n) for n in df.loc[df["status"] == "complete", "number"])
    rest = first_of_its_arch([n for n in complete if n not in front])
    return front + sorted(random.Random(seed).sample(rest, min(sample, len(rest))))


def fidelity_spec(url: str, study: str, profile: str, *, top: int, sample: int, name: str | None = None,
                  seed: int = 0, seeds: int | None = None, tracking: str | None = None):
    """The fidelity study of `study` (in storage `url`) at `profile`: its objectives, seeds (or `seeds`),
    resources and concurrency, and the architectures `choose_trials` picks. Raises ConfigError with one
    sentence when the source has too few complete trials or the profile is not larger than the source's."""
    from nas.reader import study_frame, trial_archs
    from nas.spec import StudySpec, validate
    from workers.profile import load_profile

    source, _ = study_frame(url, study)
    stored = source.spec
    if source.kind == "fidelity":
        raise ConfigError(f"{study!r} is a fidelity study itself; give the study it re-trains")
    numbers = choose_trials(url, study, top, sample, seed)
    if len(numbers) < 3:
        raise ConfigError(
            f"study {study!r} has {len(numbers)} complete trial(s) to re-train; a rank correlation needs at "
            "least 3: run the study longer or raise --top / --sample"
        )
    big, small = load_profile(profile), load_profile(stored.get("profile", "cpu-tiny"))
    if big.params <= small.params:
        raise ConfigError(
            f"profile {big.name!r} ({big.params:,.0f} parameters) is not larger than the study's profile "
            f"{small.name!r} ({small.params:,.0f}); choose a larger one (at least 10× is the usual test)"
        )
    archs = dict(trial_archs(url, study))
    data = {
        "name": name or f"{study}-at-{big.name}",
        "kind": "fidelity",
        "description": f"the trials {numbers} of {study} re-trained at {big.name}",
        "space": None,
        "fidelity": {"source": study, "archs": {str(n): archs[n].to_dict() for n in numbers}},
        "objectives": stored.get("objectives") or [{"metric": m} for m in source.metrics],
        "profile": profile,
        "seeds": seeds or stored.get("seeds", 1),
        "resources": stored.get("resources") or {},
        "concurrency": stored.get("concurrency", 1),
        "storage": url,
        "tracking": tracking,
    }
    return validate(StudySpec.model_validate(data))


@dataclass(frozen=True)
class FidelityRow:
    metric: str
    pairs: int  # source trials with a complete re-training
    rho: float  # Spearman's rank correlation between the two sizes (nan for fewer than 3 pairs)
    low: float  # its bootstrap 95% interval
    high: float
    source: list[float]  # the paired values: at the source's size,
    larger: list[float]  # and at the fidelity study's,
    trials: list[int]  # of these source trials,
    patterns: list[str]  # with these layer patterns,
    source_sd: list[float | None] | None = None  # and the source values' sd over seeds (where it had several)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks (ties take their mean rank); nan if either is constant."""
    import pandas as pd

    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _interval(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(x), size=(BOOTSTRAP, len(x)))
    rhos = np.array([spearman(x[i], y[i]) for i in draws])
    rhos = rhos[np.isfinite(rhos)]
    if not len(rhos):
        return float("nan"), float("nan")
    return float(np.percentile(rhos, 2.5)), float(np.percentile(rhos, 97.5))


QUALITY = ("lm_loss", "bpb", "synthetic_accuracy")  # with every `acc.<task>`: `metrics=["all"]`


def fidelity_report(url: str, name: str, metrics: list[str] | None = None,
                    without: list[str] | None = None) -> list[FidelityRow]:
    """Per objective (or per metric of `metrics`: any the two studies' trials both record, such as one task's
    `acc.mqar`; `["all"]`: the objectives, then every quality metric both record, the LM loss and bits per
    byte, the recall mean and each task's accuracy): the source trials' values against their re-trainings',
    Spearman ρ and its interval. `without` (task names) adds a last row: the recall mean over the other tasks,
    at both sizes, as a profile that dropped those tasks would have scored the same trainings."""
    from nas.reader import study_frame

    meta, big = study_frame(url, name)
    if meta.kind != "fidelity":
        raise ConfigError(f"{name!r} is not a fidelity study; `nas fidelity STUDY --profile P` makes one")
    _, small = study_frame(url, meta.spec["fidelity"]["source"])
    small = small.set_index("number")
    done = big[big["status"] == "complete"]

    def column(m: str) -> str:  # an objective has a column of its own; any other metric its `m.` column
        return m if m in meta.metrics else f"m.{m}"

    both = set(small.columns) & set(done.columns)
    known = [*meta.metrics, *sorted(c[2:] for c in both if c.startswith("m.") and c[2:] not in meta.metrics)]
    if metrics == ["all"]:
        more = [m for m in known if m not in meta.metrics and (m in QUALITY or m.startswith("acc."))]
        metrics = [*meta.metrics, *sorted(more, key=lambda m: (QUALITY.index(m) if m in QUALITY else len(QUALITY), m))]
    missing = [m for m in metrics or [] if column(m) not in both]
    if missing:
        raise ConfigError(f"{name!r} and its source do not both record {missing[0]!r}; choose from "
                          f"{', '.join(known)}, or all")
    columns = {m: (small[column(m)], done[column(m)]) for m in metrics or meta.metrics}
    if without:
        tasks = sorted(c[len("m.acc."):] for c in both if c.startswith("m.acc."))
        unknown = [t for t in without if t not in tasks]
        if unknown:
            raise ConfigError(f"--without {unknown[0]}: the two studies record no such task; choose from "
                              f"{', '.join(tasks)}")
        kept = [f"m.acc.{t}" for t in tasks if t not in without]
        if not kept:
            raise ConfigError("--without names every task the studies record: no recall mean is left to correlate")
        columns[f"synthetic_accuracy without {', '.join(without)}"] = (small[kept].mean(axis=1, skipna=False),
                                                                         done[kept].mean(axis=1, skipna=False))
    rows = []
    for m, (there, here) in columns.items():
        pairs = [(int(n), float(there[int(n)]), float(v))
                 for n, v in zip(done["p.source"], here, strict=True)
                 if int(n) in small.index and np.isfinite(there[int(n)])]
        pairs.sort()
        x = np.array([p[1] for p in pairs])
        y = np.array([p[2] for p in pairs])
        rho = spearman(x, y) if len(pairs) >= 3 else float("nan")
        low, high = _interval(x, y) if len(pairs) >= 3 else (float("nan"), float("nan"))
        trials = [p[0] for p in pairs]
        spread = small.get(f"sd.{m}")
        sd = [float(spread[n]) if np.isfinite(spread[n]) else None for n in trials] if spread is not None else []
        rows.append(FidelityRow(m, len(pairs), rho, low, high, x.tolist(), y.tolist(), trials,
                                [small.at[n, "pattern"] or "" for n in trials],
                                sd if any(v is not None for v in sd) else None))
    return rows
