"""`ArchConfig`: a hybrid language model written down as a layer pattern plus per-family options.

    pattern: "M-M-M*-M-"      # one symbol per pre-norm residual sublayer (see `pattern.py`)
    d_model: 512
    vocab_size: 256
    attention: {heads: 8, kv_heads: 2, pos: nope}
    mamba2: {d_state: 128, head_dim: 64}
    mlp: {ratio: 4.0}

    pattern: "WWWWW*-" ...    # local and global attention: `W` reads `local_attention` (a window), `*` `attention`
    pattern: "DDD*-" ...      # Gated DeltaNet : attention 3:1; `deltanet: {gate: channel}` makes the D layers KDA

A family's options are filled with defaults when its symbol is in the pattern and may not be given when
it is not. Widths are derived from `d_model` (ratios and factors), so one config scales by changing
`d_model` alone. Configs are frozen, reject unknown keys, and round-trip exactly through YAML and JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from search_spaces.config import ConfigError, Strict, explain_validation_error, load_yaml, read_text
from search_spaces.pattern import FAMILIES, SYMBOLS, PatternError, count, parse_pattern

__all__ = [
    "ArchConfig",
    "AttentionOptions",
    "DeltaNetOptions",
    "LocalAttentionOptions",
    "MLPOptions",
    "MLSTMOptions",
    "Mamba1Options",
    "Mamba2Options",
    "MoEOptions",
    "ShortConvOptions",
]


class AttentionOptions(Strict):
    """Causal grouped-query attention."""

    heads: int = Field(8, gt=0)
    kv_heads: int | None = Field(None, gt=0, description="None: as many as heads (multi-head attention)")
    head_dim: int | None = Field(None, gt=0, description="None: d_model // heads")
    pos: Literal["rope", "nope"] = "rope"
    rope_theta: float = Field(10_000.0, gt=0)
    rope_fraction: float = Field(1.0, gt=0, le=1, description="share of each head's dims that RoPE rotates")
    window: int | None = Field(None, gt=0, description="None: global; N: each query sees its N latest tokens")
    output_gate: bool = Field(False, description="Qwen3-Next's gated attention: each head's output times σ(x W_g)")
    qk_norm: bool = Field(False, description="RMSNorm over each head's q and k before RoPE (Qwen3, Gemma 3)")

    def dims(self, d_model: int) -> tuple[int, int, int]:
        """(heads, kv_heads, head_dim) at this width."""
        return self.heads, self.kv_heads or self.heads, self.head_dim or d_model // self.heads


class LocalAttentionOptions(AttentionOptions):
    """Attention over a sliding window (`W`): the options of `*`, with a window always set, so that a
    pattern mixes local and global attention (Gemma 3: five local layers to one global)."""

    window: int = Field(1024, gt=0, description="each query sees its N latest tokens, itself included")


class Mamba2Options(Strict):
    """Mamba-2 (SSD): scalar decay per head, B/C shared within groups."""

    d_state: int = Field(128, gt=0)
    head_dim: int = Field(64, gt=0)
    expand: int = Field(2, gt=0)
    n_groups: int = Field(1, gt=0)
    d_conv: int = Field(4, gt=0)
    chunk_size: int = Field(256, gt=0)
    norm: Literal["group", "head", "none"] = Field(
        "group", description="the gated RMSNorm of y·silu(z) before out_proj: over each of the n_groups slices of "
        "d_inner (Mamba-2's), over each head, or none (out_proj(y·silu(z)))")

    def d_inner(self, d_model: int) -> int:
        return self.expand * d_model

    def n_heads(self, d_model: int) -> int:
        return self.d_inner(d_model) // self.head_dim


class Mamba1Options(Strict):
    """Mamba-1: selective scan with a diagonal state per channel."""

    d_state: int = Field(16, gt=0)
    expand: int = Field(2, gt=0)
    d_conv: int = Field(4, gt=0)
    dt_rank: int | None = Field(None, gt=0, description="None: ceil(d_model / 16)")

    def d_inner(self, d_model: int) -> int:
        return self.expand * d_model

    def rank(self, d_model: int) -> int:
        return self.dt_rank or math.ceil(d_model / 16)


class MLSTMOptions(Strict):
    """xLSTM's mLSTM layer: matrix memory, exponential input gate, sigmoid forget gate."""

    heads: int = Field(4, gt=0)
    qk_dim_factor: float = Field(0.5, gt=0)
    v_dim_factor: float = Field(1.0, gt=0)

    def qk_dim(self, d_model: int) -> int:
        return round(self.qk_dim_factor * d_model)

    def v_dim(self, d_model: int) -> int:
        return round(self.v_dim_factor * d_model)


class DeltaNetOptions(Strict):
    """Gated DeltaNet (Yang, Kautz, Hatamizadeh 2024): the delta rule with a decay gate, short convolutions
    on q/k/v, L2-normalised q and k, an output gate and norm. `gate: channel` decays each key channel on
    its own, with low-rank gate projections: Kimi Delta Attention (KDA)."""

    heads: int = Field(4, gt=0, description="q/k heads")
    head_dim: int | None = Field(None, gt=0, description="q/k head dim; None: d_model // heads")
    v_heads: int | None = Field(None, gt=0, description="None: heads; a multiple of heads (they share q/k)")
    v_head_dim: int | None = Field(None, gt=0, description="None: head_dim")
    gate: Literal["head", "channel"] = Field("head", description="a decay per head, or per key channel (KDA)")
    d_conv: int = Field(4, gt=0)
    chunk_size: int = Field(64, gt=0)

    def dims(self, d_model: int) -> tuple[int, int, int, int]:
        """(heads, head_dim, v_heads, v_head_dim) at this width."""
        head_dim = self.head_dim or d_model // self.heads
        return self.heads, head_dim, self.v_heads or self.heads, self.v_head_dim or head_dim

    def widths(self, d_model: int) -> tuple[int, int]:
        """(q/k width, v width): heads · head_dim and v_heads · v_head_dim."""
        h, k, hv, v = self.dims(d_model)
        return h * k, hv * v


class ShortConvOptions(Strict):
    """LFM2's gated short convolution: x → (b, c, h) = x W_in; y = c ⊙ conv(b ⊙ h); out = y W_out."""

    d_conv: int = Field(3, gt=0, description="the convolution's width (LFM2's L_cache)")


Activation = Literal["swiglu", "relu2", "gelu"]  # gated SiLU; squared ReLU; GeLU (the last two not gated)
FFN_MULTIPLE = 16  # feed-forward widths are multiples of this (of half of it below it)


def ffn_width(ratio: float, d_model: int) -> int:
    """ratio · d_model to the nearest multiple of 16, or of 8 below 12: transformers' grouped expert GEMMs
    need rows of a multiple of 16 bytes, and every published model's width is a multiple of 16 already.
    A tiny proxy's expert of 0.1875 · 16 = 3 becomes 8."""
    x = ratio * d_model
    m = FFN_MULTIPLE if x >= 0.75 * FFN_MULTIPLE else FFN_MULTIPLE // 2
    return max(m, m * round(x / m))


class MLPOptions(Strict):
    """Dense MLP; hidden width ratio · d_model, to a multiple of 16 (`ffn_width`)."""

    ratio: float = Field(4.0, gt=0)
    activation: Activation = "swiglu"

    def d_ff(self, d_model: int) -> int:
        return ffn_width(self.ratio, d_model)


class MoEOptions(Strict):
    """Top-k routed experts with no dropped tokens, an optional always-on shared expert."""

    experts: int = Field(8, gt=0)
    top_k: int = Field(2, gt=0)
    ratio: float = Field(4.0, gt=0, description="expert hidden width / d_model")
    shared_expert: bool = False
    shared_ratio: float | None = Field(None, gt=0, description="None: the experts' ratio")
    activation: Activation = "swiglu"
    aux_loss_weight: float = Field(0.01, ge=0)

    def d_ff(self, d_model: int) -> int:
        return ffn_width(self.ratio, d_model)

    def d_ff_shared(self, d_model: int) -> int:
        return ffn_width(self.shared_ratio or self.ratio, d_model) if self.shared_expert else 0


OPTION_TYPES: dict[str, type[Strict]] = {
    "attention": AttentionOptions,
    "mamba2": Mamba2Options,
    "mamba1": Mamba1Options,
    "mlstm": MLSTMOptions,
    "deltanet": DeltaNetOptions,
    "shortconv": ShortConvOptions,
    "local_attention": LocalAttentionOptions,
    "mlp": MLPOptions,
    "moe": MoEOptions,
}


_QUIET_SWITCHES = ("output_gate", "qk_norm")
MAX_DELTA_HEAD_DIM = 256  # kernels.delta.MAX_TRITON_K (search_spaces imports no torch)


def _divisors(n: int) -> str:
    ds = [d for d in range(1, n + 1) if n % d == 0]
    return ", ".join(map(str, ds if len(ds) <= 12 else [*ds[:6], "…", *ds[-3:]]))


class ArchConfig(BaseModel):
    """A hybrid LM: the layer pattern, the width and each family's options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str
    d_model: int = Field(gt=0)
    vocab_size: int = Field(256, gt=0)
    tie_embeddings: bool = True
    norm_eps: float = Field(1e-5, gt=0)
    attention: AttentionOptions | None = None
    mamba2: Mamba2Options | None = None
    mamba1: Mamba1Options | None = None
    mlstm: MLSTMOptions | None = None
    deltanet: DeltaNetOptions | None = None
    shortconv: ShortConvOptions | None = None
    local_attention: LocalAttentionOptions | None = None
    mlp: MLPOptions | None = None
    moe: MoEOptions | None = None

    @field_validator("pattern")
    @classmethod
    def _parse(cls, v: str) -> str:
        return parse_pattern(v)

    @model_validator(mode="before")
    @classmethod
    def _fill_families(cls, data: Any) -> Any:
        """Give every family in the pattern its default options; refuse options of absent families."""
        if not isinstance(data, dict) or not isinstance(data.get("pattern"), str):
            return data
        try:
            pattern = parse_pattern(data["pattern"])
        except PatternError:
            return data  # the field validator reports it
        data = dict(data)
        for family, symbol in FAMILIES.items():
            present = symbol in pattern
            if present and data.get(family) is None:
                data[family] = {}
            elif not present and data.get(family) is not None:
                raise ValueError(
                    f"{family} options are given but the pattern has no '{symbol}' ({SYMBOLS[symbol][1]}) "
                    f"sublayer; remove the {family} block or add '{symbol}' to the pattern"
                )
        return data

    @model_validator(mode="after")
    def _check_widths(self) -> ArchConfig:
        d = self.d_model
        for name in ("attention", "local_attention"):
            if (a := getattr(self, name)) is None:
                continue
            if a.head_dim is None and d % a.heads:
                raise ValueError(
                    f"{name}.heads={a.heads} does not divide d_model={d}; "
                    f"choose heads among {_divisors(d)} or set {name}.head_dim"
                )
            heads, kv, hd = a.dims(d)
            if heads % kv:
                raise ValueError(
                    f"{name}.kv_heads={kv} does not divide {name}.heads={heads}; "
                    f"choose kv_heads among {_divisors(heads)}"
                )
            if a.pos == "rope" and 2 * max(1, round(a.rope_fraction * hd / 2)) > hd:
                raise ValueError(f"{name}.head_dim={hd} is too narrow for RoPE, which rotates pairs of dims; "
                                 f"use a head_dim of at least 2 or pos: nope")
        if (n := self.deltanet) is not None:
            if n.head_dim is None and d % n.heads:
                raise ValueError(
                    f"deltanet.heads={n.heads} does not divide d_model={d}; "
                    f"choose heads among {_divisors(d)} or set deltanet.head_dim"
                )
            heads, head_dim, v_heads, _ = n.dims(d)
            if head_dim > MAX_DELTA_HEAD_DIM:
                raise ValueError(
                    f"deltanet.head_dim is {head_dim} at d_model={d}, over {MAX_DELTA_HEAD_DIM}, the widest q/k "
                    f"head the delta-rule kernels take; set deltanet.head_dim or more deltanet.heads"
                )
            if v_heads % heads:
                raise ValueError(
                    f"deltanet.v_heads={v_heads} is not a multiple of deltanet.heads={heads}; each q/k head "
                    f"serves the same number of value heads, so choose v_heads among {heads}, {2 * heads}, "
                    f"{3 * heads}, …"
                )
        if (m2 := self.mamba2) is not None:
            inner = m2.d_inner(d)
            if inner % m2.head_dim:
                raise ValueError(
                    f"mamba2.head_dim={m2.head_dim} does not divide the inner width expand×d_model={inner}; "
                    f"choose head_dim among {_divisors(inner)}"
                )
            if m2.n_heads(d) % m2.n_groups:
                raise ValueError(
                    f"mamba2.n_groups={m2.n_groups} does not divide the {m2.n_heads(d)} Mamba-2 heads; "
                    f"choose n_groups among {_divisors(m2.n_heads(d))}"
                )
        if (x := self.mlstm) is not None:
            for name, width in (("qk", x.qk_dim(d)), ("v", x.v_dim(d))):
                factor = getattr(x, f"{name}_dim_factor")
                if width < 1 or abs(factor * d - width) > 1e-9 or width % x.heads:
                    raise ValueError(
                        f"mlstm.{name}_dim_factor={factor} gives a {name} width of {factor * d:g} at "
                        f"d_model={d}, which must be a whole number divisible by mlstm.heads={x.heads}"
                    )
        if (e := self.moe) is not None and e.top_k > e.experts:
            raise ValueError(
                f"moe.top_k={e.top_k} is more than moe.experts={e.experts}; a token cannot be routed to "
                "more experts than exist"
            )
        return self

    @classmethod
    def compose(cls, pattern: str, d_model: int, **options: Any) -> ArchConfig:
        """Build a config from options for any families, keeping only those the pattern uses.

        For programs that sweep patterns over one set of family options (search spaces, ablations);
        a user's file is checked strictly instead.
        """
        try:
            layers = parse_pattern(pattern)
        except PatternError as e:
            raise ConfigError(str(e)) from None
        kept = {k: v for k, v in options.items() if k not in FAMILIES or FAMILIES[k] in layers}
        return cls.from_dict({"pattern": pattern, "d_model": d_model, **kept})

    # ----- what the pattern holds -----------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """Family name of each sublayer, in order."""
        return [SYMBOLS[ch][0] for ch in self.pattern]

    @property
    def n_sublayers(self) -> int:
        return len(self.pattern)

    def count(self, family: str) -> int:
        return count(self.pattern)[family]

    @property
    def families(self) -> list[str]:
        """Families present, in the order of first appearance."""
        return list(dict.fromkeys(self.layers))

    # ----- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude_none=True)
        # switches that came after configs were stored are written only when on: older configs read the same
        for family in ("attention", "local_attention"):
            for key in _QUIET_SWITCHES:
                if data.get(family, {}).get(key) is False:
                    del data[family][key]
        return data

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)

    @classmethod
    def from_dict(cls, data: Any) -> ArchConfig:
        if not isinstance(data, dict):
            raise ConfigError(
                f"an architecture must be a mapping of keys (pattern, d_model, ...), got {type(data).__name__}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ConfigError(explain_validation_error(err, cls)) from None

    @classmethod
    def from_yaml(cls, text: str) -> ArchConfig:
        return cls.from_dict(load_yaml(text, "the architecture"))

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"the architecture is not valid JSON: {err}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> ArchConfig:
        path = Path(path)
        text = read_text(path, "architecture file")
        if not text.strip():
            raise ConfigError(
                f"the architecture file {path} is empty; it needs at least pattern and d_model "
                "(`nas presets jamba --yaml` prints a complete one)"
            )
        try:
            return cls.from_json(text) if path.suffix == ".json" else cls.from_yaml(text)
        except ConfigError as err:  # name the file: the same key may be wrong in several of them
            raise ConfigError(f"architecture file {path.name}: {err}") from None

    def replace(self, **changes: Any) -> ArchConfig:
        """A new config with `changes` applied; family options merge key by key.

        Families that leave the pattern lose their options; families that enter it get defaults.

            cfg.replace(pattern="M-M*-", attention={"pos": "nope"})
        """
        data = self.to_dict()
        for key, value in changes.items():
            if key in OPTION_TYPES and isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        try:
            pattern = parse_pattern(data["pattern"])
        except PatternError as err:
            raise ConfigError(str(err)) from None
        for family, symbol in FAMILIES.items():
            if symbol not in pattern and family not in changes:
                data.pop(family, None)
        return ArchConfig.from_dict(data)
