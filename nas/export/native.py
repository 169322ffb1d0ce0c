"""The project's own format: the `ArchConfig` YAML plus the full-size run's training hyper-parameters.

    files = render(cfg, training={"tokens": 2e10})     # {"arch.yaml": ..., "training.yaml": ...}
    arch, training = load_exported_yaml("out/y")       # both read back, exactly
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError

from search_spaces import ArchConfig
from search_spaces.config import ConfigError, Strict, explain_validation_error
from search_spaces.cost import param_counts

__all__ = ["TrainingOptim", "TrainingSettings", "default_training", "load_exported_yaml", "render", "training"]


class TrainingOptim(Strict):
    """AdamW, linear warmup, cosine decay to min_lr_ratio·lr, global-norm clipping (as proxies train)."""

    lr: float = Field(3e-4, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_fraction: float = Field(0.01, ge=0, lt=1)
    weight_decay: float = Field(0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = Field(1.0, gt=0)


class TrainingSettings(Strict):
    """The full-size run's hyper-parameters, written beside the architecture."""

    seq_len: int = Field(4096, gt=0)
    batch_size: int = Field(512, gt=0, description="sequences per optimiser step")
    tokens: int = Field(gt=0, description="training budget")
    precision: Literal["bf16", "fp32"] = "bf16"
    seed: int = 0
    optim: TrainingOptim = TrainingOptim()


def _validate(data: dict[str, Any], what: str) -> dict[str, Any]:
    try:
        return TrainingSettings.model_validate(data).model_dump(mode="json")
    except ValidationError as err:
        raise ConfigError(explain_validation_error(err, TrainingSettings, what)) from None


def default_training(cfg: ArchConfig) -> dict[str, Any]:
    """Defaults for a full-size run: 20 tokens per parameter (Chinchilla), 2M-token batches, AdamW 3e-4."""
    n = 20 * param_counts(cfg).total
    tokens = int(float(f"{n:.2g}"))  # two significant figures
    return TrainingSettings(tokens=tokens).model_dump(mode="json")


def training(cfg: ArchConfig, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """`default_training` with `overrides` applied (optim merged key by key), validated."""
    data = default_training(cfg)
    for key, value in (overrides or {}).items():
        if key == "optim" and isinstance(value, dict):
            data["optim"] = {**data["optim"], **value}
        else:
            data[key] = value
    if isinstance(data.get("tokens"), float) and data["tokens"].is_integer():
        data["tokens"] = int(data["tokens"])  # 2e10 from YAML or Python is a whole number of tokens
    return _validate(data, "training")


def render(cfg: ArchConfig, overrides: dict[str, Any] | None = None, size: str = "") -> dict[str, str]:
    """arch.yaml and training.yaml (file name -> text); `size` notes a resize in arch.yaml's header."""
    return {
        "arch.yaml": f"# hybrid-nas architecture{size}, written by `nas export`\n{cfg.to_yaml()}",
        "training.yaml": "# hyper-parameters of the full-size run, written by `nas export`\n"
        + yaml.safe_dump(training(cfg, overrides), sort_keys=False, default_flow_style=None),
    }


def load_exported_yaml(path: str | Path) -> tuple[ArchConfig, dict[str, Any]]:
    """(architecture, training hyper-parameters) of a `--format yaml` export: its directory or arch.yaml."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    arch = ArchConfig.load(folder / "arch.yaml" if path.is_dir() else path)
    tpath = folder / "training.yaml"
    try:
        data = yaml.safe_load(tpath.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read the training settings {tpath}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"the training settings {tpath} are not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the training settings {tpath} must be a mapping of keys (seq_len, tokens, ...)")
    return arch, _validate(data, f"training settings {tpath.name}")
