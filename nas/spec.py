"""Study specs: what to search (or ablate), for which objectives, under which budget. YAML; strict.

    name: ratio-study
    kind: search
    space: hybrid-ratio
    objectives:
      - {metric: synthetic_accuracy, direction: maximize}
      - {metric: decode_tps, direction: maximize}
    constraints: {params: {budget: 2.0e+5, tolerance: 0.3}}
    budget: {trials: 16}
    profile: cpu-tiny
    concurrency: 2

`load_spec` checks everything a study will need (space, profile, metrics, preset, factors) before a
study exists, and says what is wrong in one sentence.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from nas.ablation import ablation_archs, ablation_grid
from nas.settings import mask_url, settings
from search_spaces.config import ConfigError, Strict, explain_validation_error, parse_mapping, read_text
from search_spaces.space import SearchSpace, load_space
from workers.profile import load_profile
from workers.result import METRICS, metric_direction

__all__ = [
    "AblationSpec",
    "Objective",
    "StudySpec",
    "file_references",
    "load_spec",
    "metric_direction",
    "spec_from_text",
    "validate",
]


class Objective(Strict):
    metric: str
    direction: Literal["maximize", "minimize"] | None = None  # None: the metric's own (accuracy: maximize)


class ParamsConstraint(Strict):
    budget: float = Field(gt=0, description="total parameters; the width is solved to land on it")
    tolerance: float = Field(0.25, ge=0, description="relative: 0.25 accepts ±25%")


class MemoryConstraint(Strict):
    context: int = Field(gt=0)
    max_bytes: float = Field(gt=0, description="KV cache + recurrent state per sequence at that context")


class Constraints(Strict):
    params: ParamsConstraint | None = None
    memory: MemoryConstraint | None = None


class Budget(Strict):
    trials: int | None = Field(None, gt=0, description="trials trained to a result (infeasible ones not counted)")
    hours: float | None = Field(None, gt=0, description="wall-clock hours, summed over resumed runs")

    @model_validator(mode="after")
    def _some(self) -> Budget:
        if self.trials is None and self.hours is None:
            raise ValueError("budget needs trials, hours or both, e.g. budget: {trials: 16}")
        return self


class Resources(Strict):
    cpus: float = Field(1.0, gt=0)
    gpus: float = Field(0.0, ge=0, description="a fraction shares one GPU between trials")
    reuse_workers: bool = Field(
        True, description="GPU jobs run in worker processes kept for the next job (kernels compiled once per "
        "worker); false starts a fresh process for every job"
    )


class EarlyStopping(Strict):
    """Successive halving over the token budget, promoting by non-dominated rank, then crowding (MO-ASHA).

    The defaults are the ones measured best (docs/gpu-studies.md#early-stopping): a quarter of the budget,
    then all of it, keeping a quarter (eta 4), kept 94-97% of the hypervolume for 31-39% of the job time in
    studies on an H200 (82% in the first of three runs, before a repeated architecture was ranked once);
    keeping a third kept 95-100% but for 40-54%. A lower rung runs only what the objectives read
    (`workers.result.parts_for`); `promotion` is explained in `nas.asha`."""

    enabled: bool = False
    rungs: list[float] = Field([0.25, 1.0], min_length=2)
    eta: int = Field(4, ge=2)
    promotion: Literal["asynchronous", "synchronous"] = Field(
        "asynchronous",
        description="asynchronous: a trial goes up once it is in the top 1/eta of its rung so far (ASHA); "
        "synchronous: only once no trial still to come can push it out (needs budget.trials; nas.asha)",
    )

    @field_validator("rungs")
    @classmethod
    def _increasing(cls, rungs: list[float]) -> list[float]:
        if any(b <= a for a, b in itertools.pairwise(rungs)) or rungs[0] <= 0 or rungs[-1] != 1.0:
            raise ValueError(
                "early_stopping.rungs must increase from a positive fraction to 1.0, e.g. [0.25, 1.0]"
            )
        return rungs


class AblationSpec(Strict):
    base: str | dict[str, Any] = Field(description="a preset name, an ArchConfig YAML path, or an inline ArchConfig")
    factors: dict[str, list[Any]] = Field(min_length=1)
    seeds: int = Field(3, ge=1)


class FidelitySpec(Strict):
    source: str = Field(description="the study, in the same storage, whose trials are re-trained")
    archs: dict[str, dict[str, Any]] = Field(min_length=1, description="each source trial's architecture, by number")


class StudySpec(Strict):
    name: str
    kind: Literal["search", "ablation", "fidelity"] = "search"
    description: str = ""
    space: str | dict[str, Any] | None = None
    ablation: AblationSpec | None = None
    fidelity: FidelitySpec | None = None
    objectives: list[Objective] = Field(
        default_factory=lambda: [Objective(metric="synthetic_accuracy"), Objective(metric="decode_tps")],
        min_length=1,
        max_length=3,
    )
    constraints: Constraints = Constraints()
    sampler: Literal["auto", "nsga2", "tpe", "gp", "random", "grid"] = "auto"
    budget: Budget = Budget(trials=16)
    profile: str | dict[str, Any] = "cpu-tiny"
    seeds: int = Field(1, ge=1, description="seeds per trial; objectives are their mean")
    seed: int = Field(0, description="the sampler's seed")
    resources: Resources = Resources()
    concurrency: int = Field(1, ge=1)
    early_stopping: EarlyStopping = EarlyStopping()
    storage: str | None = None
    tracking: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name):
            raise ValueError(f"study name {name!r} must be letters, digits, '.', '_' or '-' (at most 100)")
        return name

    @model_validator(mode="after")
    def _kind(self) -> StudySpec:
        if self.kind == "search" and self.space is None:
            raise ValueError("a search study needs a space: a name (hybrid-ratio, full, ...) or an inline space")
        if self.kind == "ablation" and self.ablation is None:
            raise ValueError("an ablation study needs an ablation section with base, factors and seeds")
        if self.kind == "ablation" and self.early_stopping.enabled:
            raise ValueError("early stopping would cut ablation cells short; disable it for kind: ablation")
        if self.kind == "fidelity" and self.fidelity is None:
            raise ValueError("a fidelity study needs a fidelity section with source and archs "
                             "(`nas fidelity STUDY --profile P` writes it)")
        if self.kind == "fidelity" and self.early_stopping.enabled:
            raise ValueError("early stopping would cut re-trainings short; disable it for kind: fidelity")
        es = self.early_stopping
        if es.enabled and es.promotion == "synchronous" and self.budget.trials is None and self.sampler != "grid":
            raise ValueError("synchronous promotion waits for the trials still to come, so it needs a trial "
                             "budget: add budget: {trials: N} or use early_stopping.promotion: asynchronous")
        return self

    def stored(self) -> dict[str, Any]:
        """The spec as it is kept (in Optuna's study attributes, the queue, MLflow): JSON, with any password
        in its `storage` or `tracking` URL masked. Where a study runs is the runner's to know, not the record's."""
        data = self.model_dump(mode="json")
        for key in ("storage", "tracking"):
            if data.get(key):
                data[key] = mask_url(data[key])
        return data

    # ----- resolved views -------------------------------------------------------------------------
    @property
    def storage_url(self) -> str:
        return self.storage or settings().storage

    @property
    def tracking_url(self) -> str:
        return self.tracking or settings().tracking

    @property
    def directions(self) -> list[str]:
        return [o.direction or metric_direction(o.metric) for o in self.objectives]

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.objectives]

    def search_space(self) -> SearchSpace:
        return load_space(self.space)  # type: ignore[arg-type]

    def sampler_name(self) -> str:
        if self.sampler != "auto":
            return self.sampler
        return "grid" if self.kind in ("ablation", "fidelity") else "nsga2" if len(self.objectives) > 1 else "tpe"

    def grid(self) -> dict[str, list]:
        """A grid study's dimensions and their levels (an ablation's factors and seeds)."""
        if self.kind == "ablation":
            return ablation_grid(self)
        if self.kind == "fidelity":
            from nas.fidelity import fidelity_grid

            return fidelity_grid(self)
        return self.search_space().grid()

    def grid_points(self) -> list[dict[str, Any]]:
        """Every point of a grid study (an ablation's cells × seeds), in order."""
        grid = self.grid()
        return [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]


def _check_metric(name: str, profile) -> None:
    base, _, qualifier = name.partition(".")
    if base not in METRICS:
        raise ConfigError(
            f"unknown metric {name!r}; use one of {', '.join(METRICS)} "
            "(qualified as decode_tps.4096 or acc.mqar where it applies)"
        )
    contexts = [str(c) for c in profile.throughput.contexts]
    tasks = [t.name for t in profile.synthetic.tasks]
    if base in ("prefill_tps", "decode_tps", "kv_state_bytes") and qualifier and qualifier not in contexts:
        raise ConfigError(
            f"metric {name!r} names context {qualifier}, which profile {profile.name!r} does not "
            f"measure; use one of {', '.join(contexts)}"
        )
    if base == "acc" and qualifier not in tasks:
        raise ConfigError(f"metric {name!r} needs one of profile {profile.name!r}'s tasks: acc.{' / acc.'.join(tasks)}")
    if base in ("synthetic_accuracy", "acc") and not tasks:
        raise ConfigError(f"metric {name!r} needs synthetic tasks, and profile {profile.name!r} has none")


def validate(spec: StudySpec) -> StudySpec:
    """Everything a study needs exists and fits together; raises ConfigError with one sentence otherwise."""
    profile = load_profile(spec.profile)
    for o in spec.objectives:
        _check_metric(o.metric, profile)
    if len(set(spec.metrics)) != len(spec.metrics):
        raise ConfigError("objectives name the same metric twice; each objective needs its own metric")
    if spec.kind == "search":
        try:
            space = spec.search_space()
        except ConfigError as e:  # the architecture its base builds: say where the key is in the spec
            msg = str(e)
            if isinstance(spec.space, dict) and msg.startswith("unknown key '"):
                msg = msg.replace("unknown key '", "unknown key 'space.base.", 1)
            raise ConfigError(msg) from None
        if spec.sampler_name() == "grid":
            space.grid()
    elif spec.kind == "fidelity":
        from nas.fidelity import fidelity_arch

        for n in spec.fidelity.archs:
            fidelity_arch(spec, profile, {"source": n})
    else:
        ablation_archs(spec, profile)
    if spec.resources.gpus > 1 and spec.resources.gpus != int(spec.resources.gpus):
        raise ConfigError("resources.gpus above 1 must be a whole number of GPUs")
    return spec


def file_references(spec: StudySpec) -> list[str]:
    """The files a spec names (a space, a profile or an ablation's base given as a path), as `key: path`."""
    refs = [("space", spec.space), ("profile", spec.profile)]
    if spec.ablation is not None:
        refs.append(("ablation.base", spec.ablation.base))
    return [f"{key}: {value}" for key, value in refs
            if isinstance(value, str) and (Path(value).suffix or "/" in value or "\\" in value)]


_INLINE = {"the inline search space: ": "space.", "the inline profile: ": "profile."}


def _located(message: str, where: str) -> str:
    """An inline section's complaint said of the spec `where`, with the section's key path ("study spec
    s.yaml: unknown key 'profile.lm.seq_lenn'"); any other message as it is (it names what is wrong)."""
    for inline, section in _INLINE.items():
        if message.startswith(inline):
            message = message[len(inline):].replace("key '", f"key '{section}", 1)
            if not message.startswith("unknown key"):
                message = f"{section.rstrip('.')}: {message}"
            return f"{where}: {message}"
    if message.startswith("unknown key 'space.base."):
        return f"{where}: {message}"
    return message


def spec_from_text(text: str, where: str = "the spec", *, files: bool = True) -> StudySpec:
    """A spec from its YAML text, validated. `files=False` for text from someone who cannot see this
    machine's files (the dashboard's Submit page): a spec naming one is refused before anything is read."""
    data = parse_mapping(text, where, "name, kind, space, objectives, ...")
    try:
        spec = StudySpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(explain_validation_error(e, StudySpec, where)) from None
    refs = file_references(spec)
    if refs and not files:
        raise ConfigError(
            f"{where} names a file ({refs[0]}), which is not read here; name a bundled one instead "
            "(space: hybrid-ratio, profile: cpu-tiny, base: a preset) or write it inline in the spec"
        )
    try:
        return validate(spec)
    except ConfigError as e:
        raise ConfigError(_located(str(e), where)) from None


def load_spec(path: str | Path) -> StudySpec:
    path = Path(path)
    return spec_from_text(read_text(path, "study spec"), f"study spec {path.name}")
