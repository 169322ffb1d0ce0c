"""Search spaces: named dimensions, sampled by an Optuna-style trial and built into an `ArchConfig`.

A space is data (`search_spaces/spaces/*.yaml`, or inline in a study spec):

    name: hybrid-ratio
    base: {d_model: 128, attention: {heads: 4}, mamba2: {d_state: 64, head_dim: 32}, mlp: {ratio: 4.0}}
    dimensions:
      layers: 8                                   # a fixed value
      attn_ratio: ["0", "1:7", "1:3", "all"]      # a list: one of these
      placement: [even, middle, late]
      ssm: [mamba1, mamba2, mlstm, deltanet, kda, shortconv]
      mamba2.d_state: {low: 16, high: 128, log: true}   # an int range; floats work the same way

The model has `layers` layers, each a mixer (attention or the SSM family) and a feed-forward (MLP or
MoE). Structural dimensions lay out the pattern:

| dimension | values | meaning |
|---|---|---|
| `layers` | int | mixer layers (each with its feed-forward) |
| `attn_ratio` | `"0"`, `"a:s"`, `"all"` | attention : SSM; a:s gives round(layers·a/(a+s)) attention layers, ≥ 1 |
| `placement` | `even`, `middle`, `late`, `early` | attention spread evenly, a block in the middle, last, first |
| `ssm` | `mamba1`, `mamba2`, `mlstm`, `deltanet`, `kda`, `shortconv` | the other mixers (`kda`: `D`, channel gate) |
| `ffn` | `mlp`, `none` | whether non-MoE layers have a dense MLP |
| `moe` | `none`, `every`, `every_k`, `after_attention` | which feed-forwards are MoE |
| `moe_every` | int k | with `every_k`: layers k-1, 2k-1, … (Jamba: k = 2) |
| `pos` | `rope`, `nope` | attention's positional encoding |
| `d_state`, `expand` | int | the chosen SSM family's state size and expansion (Mamba-1 and -2) |
| `d_model` | int | the width, when the study does not solve it from a parameter budget |

Any other dimension is a dotted path into the config's options (`mamba2.d_state`, `moe.experts`,
`mlp.ratio`, `attention.heads`). Every dimension is suggested on every trial (a fixed space, which
NSGA-II and grid search need); one that does not apply (placement with no attention) is ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from search_spaces.arch import OPTION_TYPES, ArchConfig
from search_spaces.config import ConfigError, explain_validation_error, load_named, names_in

__all__ = [
    "SPACE_DIR",
    "SSM_OPTIONS",
    "SSM_SYMBOL",
    "Range",
    "SearchSpace",
    "applies",
    "layout",
    "load_space",
    "space_names",
    "ssm_of",
]

SPACE_DIR = Path(__file__).parent / "spaces"
# the linear (non-attention) mixer families a search or an ablation chooses among, by the symbol they lay
# out and the options the choice sets besides
SSM_SYMBOL = {"mamba1": "m", "mamba2": "M", "mlstm": "X", "deltanet": "D", "kda": "D", "shortconv": "C"}
SSM_OPTIONS: dict[str, dict[str, Any]] = {
    "deltanet": {"deltanet": {"gate": "head"}},
    "kda": {"deltanet": {"gate": "channel"}},
}
STRUCTURAL = {
    "layers": None,
    "attn_ratio": None,
    "placement": ("even", "middle", "late", "early"),
    "ssm": tuple(SSM_SYMBOL),
    "ffn": ("mlp", "none"),
    "moe": ("none", "every", "every_k", "after_attention"),
    "moe_every": None,
    "pos": ("rope", "nope"),
    "d_state": None,
    "expand": None,
    "d_model": None,
}
# the pattern symbol of each option family: a dotted dimension applies only where its family is present
FAMILY_SYMBOL = {"attention": "*", "mamba2": "M", "mamba1": "m", "mlstm": "X", "deltanet": "D", "shortconv": "C",
                 "local_attention": "W", "mlp": "-", "moe": "E"}
DEFAULTS: dict[str, Any] = {
    "layers": 8, "attn_ratio": "1:7", "placement": "even", "ssm": "mamba2", "ffn": "mlp", "moe": "none",
    "moe_every": 2,
}


class Trial(Protocol):
    """What a space needs of an Optuna trial."""

    def suggest_categorical(self, name: str, choices: list) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float: ...


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float
    high: float
    step: float | None = None
    log: bool = False

    def is_int(self) -> bool:
        return all(float(v).is_integer() for v in (self.low, self.high, self.step or 1))


def ssm_of(cfg: ArchConfig) -> str | None:
    """The linear mixer family of `cfg` as the `ssm` dimension names it (the first in the pattern), or None."""
    for ch in cfg.pattern:
        if ch == "D":
            return "kda" if cfg.deltanet.gate == "channel" else "deltanet"
        name = next((n for n, sym in SSM_SYMBOL.items() if sym == ch), None)
        if name is not None:
            return name
    return None


def _attention_count(ratio: str, layers: int) -> int:
    ratio = str(ratio).strip()
    if ratio == "0":
        return 0
    if ratio == "all":
        return layers
    try:
        a, s = (float(x) for x in ratio.split(":"))
    except ValueError:
        raise ConfigError(f"attn_ratio {ratio!r} is not '0', 'all' or 'a:s' like '1:7'") from None
    if a < 0 or s < 0 or a + s == 0:
        raise ConfigError(f"attn_ratio {ratio!r} needs non-negative parts, not both zero")
    return min(layers, max(1, round(layers * a / (a + s))))


def _positions(n: int, layers: int, placement: str) -> list[int]:
    if n == 0:
        return []
    if placement == "even":
        return [int((i + 0.5) * layers / n) for i in range(n)]
    if placement == "middle":
        start = (layers - n) // 2
        return list(range(start, start + n))
    if placement == "late":
        return list(range(layers - n, layers))
    if placement == "early":
        return list(range(n))
    raise ConfigError(f"placement {placement!r} is not one of {', '.join(STRUCTURAL['placement'])}")


def layout(layers: int, attn_ratio: str, placement: str, ssm: str, ffn: str = "mlp", moe: str = "none",
           moe_every: int = 2) -> str:
    """The layer pattern of a structural choice, e.g. layout(8, "1:7", "even", "mamba2") == 'M-M-M-M-*-M-M-M-'."""
    if ssm not in SSM_SYMBOL:
        raise ConfigError(f"ssm {ssm!r} is not one of {', '.join(SSM_SYMBOL)}")
    if layers < 1:
        raise ConfigError(f"layers must be at least 1, got {layers}")
    attn = set(_positions(_attention_count(attn_ratio, layers), layers, placement))
    out = []
    for i in range(layers):
        out.append("*" if i in attn else SSM_SYMBOL[ssm])
        if moe == "every" or (moe == "every_k" and i % moe_every == moe_every - 1) or (
            moe == "after_attention" and i in attn
        ):
            out.append("E")
        elif moe not in STRUCTURAL["moe"]:
            raise ConfigError(f"moe {moe!r} is not one of {', '.join(STRUCTURAL['moe'])}")
        elif ffn == "mlp":
            out.append("-")
    return "".join(out)


def applies(name: str, values: Mapping[str, Any], pattern: str | None) -> bool:
    """Whether dimension `name` had any effect on the architecture `pattern` built from `values`.

    Every dimension is suggested on every trial (a fixed space), so an all-attention trial still carries
    an `ssm` value; it chose nothing there and should not be shown as a choice. Not applying: `ssm`
    without an SSM layer, `placement` unless the model has both attention and SSM layers, `pos` without
    attention, `d_state` / `expand` unless the SSM is a Mamba present in the pattern, `moe_every` unless
    `moe` is `every_k`, `ffn` when every feed-forward is MoE, and a dotted option (`mamba2.d_state`)
    whose family is absent. An unknown pattern (None) keeps every dimension.
    """
    if not pattern:
        return True
    family, _, key = name.partition(".")
    if key:
        return FAMILY_SYMBOL.get(family, "") in pattern
    attention = "*" in pattern
    ssm = any(s in pattern for s in SSM_SYMBOL.values())
    if name == "ssm":
        return ssm
    if name == "placement":
        return attention and ssm
    if name == "pos":
        return attention
    if name in ("d_state", "expand"):
        chosen = values.get("ssm", DEFAULTS["ssm"])
        return chosen in ("mamba1", "mamba2") and SSM_SYMBOL[chosen] in pattern
    if name == "moe_every":
        return values.get("moe", DEFAULTS["moe"]) == "every_k"
    if name == "ffn":
        return values.get("moe", DEFAULTS["moe"]) != "every"
    return True


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict, description="ArchConfig fields and every family's options")
    dimensions: dict[str, Any] = Field(default_factory=dict)

    @field_validator("dimensions")
    @classmethod
    def _known(cls, dims: dict[str, Any]) -> dict[str, Any]:
        for name, value in dims.items():
            family, _, key = name.partition(".")
            if name in STRUCTURAL:
                allowed = STRUCTURAL[name]
                values = value if isinstance(value, list) else [] if isinstance(value, dict) else [value]
                bad = [v for v in values if allowed is not None and v not in allowed]
                if bad:
                    raise ValueError(f"dimension {name!r} has {bad[0]!r}; allowed: {', '.join(allowed)}")
            elif family in OPTION_TYPES and key in OPTION_TYPES[family].model_fields:
                pass
            else:
                known = ", ".join([*STRUCTURAL, "or a dotted option like mamba2.d_state"])
                raise ValueError(f"unknown dimension {name!r}; use {known}")
            if isinstance(value, dict):
                try:
                    Range.model_validate(value)
                except ValidationError as e:
                    raise ValueError(f"dimension {name!r}: {explain_validation_error(e, Range)} "
                                     "(a range is {low, high, step, log})") from None
            elif isinstance(value, list) and not value:
                raise ValueError(f"dimension {name!r} has an empty list of choices")
        return dims

    # ----- sampling --------------------------------------------------------------------------------
    def suggest(self, trial: Trial) -> dict[str, Any]:
        """Every dimension's value for this trial (fixed ones as given)."""
        values = {}
        for name, dim in self.dimensions.items():
            if isinstance(dim, list):
                values[name] = trial.suggest_categorical(name, dim)
            elif isinstance(dim, dict):
                r = Range.model_validate(dim)
                if r.is_int():
                    values[name] = trial.suggest_int(name, int(r.low), int(r.high), step=int(r.step or 1), log=r.log)
                else:
                    values[name] = trial.suggest_float(name, r.low, r.high, step=r.step, log=r.log)
            else:
                values[name] = dim
        return values

    def grid(self) -> dict[str, list]:
        """The full grid of the space's choices, for grid search; a continuous range has none."""
        grid = {}
        for name, dim in self.dimensions.items():
            if isinstance(dim, dict):
                r = Range.model_validate(dim)
                if not (r.is_int() and not r.log):
                    raise ConfigError(f"grid search needs a list or an integer range with a step for {name!r}")
                grid[name] = list(range(int(r.low), int(r.high) + 1, int(r.step or 1)))
            else:
                grid[name] = dim if isinstance(dim, list) else [dim]
        return grid

    def build(self, values: dict[str, Any]) -> ArchConfig:
        """The architecture of one point of the space (`suggest`'s output, or any mapping of dimensions)."""
        v = {**DEFAULTS, **{k: x for k, x in values.items() if k in STRUCTURAL}}
        pattern = layout(int(v["layers"]), v["attn_ratio"], v["placement"], v["ssm"], v["ffn"], v["moe"],
                         int(v["moe_every"]))
        options: dict[str, Any] = {k: (dict(x) if isinstance(x, dict) else x) for k, x in self.base.items()}
        options.setdefault("d_model", 128)
        if "d_model" in v:
            options["d_model"] = int(v["d_model"])
        if "pos" in v:
            options["attention"] = {**options.get("attention", {}), "pos": v["pos"]}
        for key in ("d_state", "expand"):
            if key in v and v["ssm"] in ("mamba1", "mamba2"):
                options[v["ssm"]] = {**options.get(v["ssm"], {}), key: int(v[key])}
        for family, chosen in SSM_OPTIONS.get(v["ssm"], {}).items():
            options[family] = {**options.get(family, {}), **chosen}
        for name, x in values.items():
            family, _, key = name.partition(".")
            if key:
                options[family] = {**options.get(family, {}), key: x}
        return ArchConfig.compose(pattern, options.pop("d_model"), **options)


def space_names() -> list[str]:
    return names_in(SPACE_DIR)


def load_space(spec: str | Path | dict | SearchSpace) -> SearchSpace:
    """A space by name (`hybrid-ratio`), by YAML path, or inline as a mapping; every corner of it must build."""
    space = load_named(spec, SearchSpace, SPACE_DIR, "search space", "name, base, dimensions")
    # a typo in base shows now, not in trial 37
    for values in _corners(space):
        space.build(values)
    return space


def _corners(space: SearchSpace):
    """The first and the last value of every dimension, each combined with the others' first."""
    first = {}
    for name, dim in space.dimensions.items():
        if isinstance(dim, list):
            first[name] = dim[0]
        elif isinstance(dim, dict):
            r = Range.model_validate(dim)
            first[name] = int(r.low) if r.is_int() else r.low
        else:
            first[name] = dim
    yield first
    for name, dim in space.dimensions.items():
        if isinstance(dim, list) and len(dim) > 1:
            yield {**first, name: dim[-1]}
        elif isinstance(dim, dict):
            r = Range.model_validate(dim)
            yield {**first, name: int(r.high) if r.is_int() else r.high}
