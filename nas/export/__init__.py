"""Export an architecture as a training config that a real framework accepts.

    export(cfg, "hf", "out/jamba")                          # config.json (+ README.md) for a transformers class
    export(cfg, "megatron", "out/m", scale_to=2e9)          # Megatron-LM hybrid-model arguments
    export(cfg, "yaml", "out/y", training={"tokens": 2e10})  # arch.yaml + training.yaml, read back exactly
    done = export_study(url, "demo", "hf", "out/front")     # every Pareto-front trial into out/front/trial-N
    done.skipped                                             # {7: "no Hugging Face class can express ..."}

One module per format: `hf` (the transformers class that can express the pattern, `hf.hf_targets`),
`megatron` (`pretrain_mamba.py`'s arguments: the shape, its `--spec`, the run's; and `train.sh`) and
`native` (the project's YAML plus training settings). This package puts them together: a format that
cannot hold an architecture says why and which formats can,
and files are written to a temporary directory first and moved into place, so a failure leaves nothing
half-written. A study's Pareto front is written trial by trial: the winners the format can hold are
written, the others are listed by trial number with the reason (an error only when none can be).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nas.export import hf, megatron, native
from nas.export.hf import HF_CLASSES, hf_targets
from nas.export.native import TrainingSettings, default_training, load_exported_yaml
from nas.export.unfit import Unfit
from nas.reader import trial_archs
from search_spaces import ArchConfig
from search_spaces.config import ConfigError
from search_spaces.scaling import scale

__all__ = [
    "FORMATS",
    "HF_CLASSES",
    "StudyExport",
    "TrainingSettings",
    "default_training",
    "export",
    "export_study",
    "hf_config",
    "hf_targets",
    "load_exported_yaml",
    "megatron_args",
    "render",
    "render_study",
    "render_with_note",
    "study_archs",
    "write",
]

Format = Literal["hf", "megatron", "yaml"]
FORMATS: tuple[str, ...] = ("hf", "megatron", "yaml")


def _formats_for(cfg: ArchConfig, but: str) -> str:
    """'--format megatron or --format yaml': the formats other than `but` that can hold `cfg`."""
    ok = []
    if but != "hf" and hf_targets(cfg):
        ok.append("--format hf")
    if but != "megatron":
        try:
            megatron.build(cfg)
            ok.append("--format megatron")
        except Unfit:
            pass
    ok.append("--format yaml")
    return hf.or_list(ok)


def hf_config(cfg: ArchConfig, target: str | None = None) -> dict[str, Any]:
    """A transformers `config.json` (as a dict) for `cfg`: the best class of `hf_targets`, or `target`."""
    try:
        return hf.build(cfg, target)
    except Unfit as e:
        raise ConfigError(f"{e}; export it with {_formats_for(cfg, 'hf')}") from None


def megatron_args(cfg: ArchConfig, pattern_flag: str = megatron.PATTERN_FLAG) -> list[str]:
    """Megatron-LM's arguments for the hybrid model `cfg` (see `nas.export.megatron.build`)."""
    try:
        return megatron.build(cfg, pattern_flag)
    except Unfit as e:
        raise ConfigError(f"{e}; export it with {_formats_for(cfg, 'megatron')}") from None


def _sized(cfg: ArchConfig, scale_to: float | None, vocab_size: int | None) -> ArchConfig:
    if scale_to is None:
        return cfg if vocab_size is None else cfg.replace(vocab_size=vocab_size)
    try:
        return scale(cfg, scale_to, vocab_size=vocab_size)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def render_with_note(
    cfg: ArchConfig,
    fmt: str,
    *,
    scale_to: float | None = None,
    training: dict[str, Any] | None = None,
    target: str | None = None,
    vocab_size: int | None = None,
) -> tuple[dict[str, str], str]:
    """(file name -> text, a line saying what to do with the files, DIR standing for their directory)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if target is not None and fmt != "hf":
        raise ConfigError(f"a target class applies to --format hf only, not --format {fmt}")
    if training is not None and fmt == "hf":
        raise ConfigError("training hyper-parameters apply to --format yaml and --format megatron, not --format hf")
    cfg = _sized(cfg, scale_to, vocab_size)
    if fmt == "hf":
        config = hf_config(cfg, target)
        cls = HF_CLASSES[config["model_type"]]
        files = {"config.json": json.dumps(config, indent=2) + "\n", "README.md": hf.readme(cfg, config)}
        return files, (
            'load it with transformers: AutoConfig.from_pretrained("DIR") gives the config that '
            f"AutoModelForCausalLM.from_config builds into {cls}"
        )
    if fmt == "megatron":
        args = megatron_args(cfg)
        train = megatron.training(native.training(cfg, training))
        files = {
            "megatron_args.txt": "\n".join(args) + "\n",
            "megatron_args.sh": megatron.script(cfg, args, train),
            "train.sh": megatron.run_script(),
        }
        return files, (
            f"train it with Megatron-LM's {megatron.SCRIPT}: MEGATRON_LM=/path/to/Megatron-LM bash DIR/train.sh "
            "--data-path ... --tokenizer-type ... (megatron_args.sh holds the arguments, --spec included)"
        )
    size = f" scaled to {scale_to:g} parameters" if scale_to is not None else ""
    return native.render(cfg, training, size), (
        'read it back with load_exported_yaml("DIR"); DIR/arch.yaml works with `nas cost --arch`'
    )


def render(cfg: ArchConfig, fmt: Format, **kwargs: Any) -> dict[str, str]:
    """The files `export` would write (name -> text), written nowhere."""
    return render_with_note(cfg, fmt, **kwargs)[0]


def write(out_dir: str | Path, files: dict[str, str]) -> list[Path]:
    """Write `files` (relative path -> text) under out_dir through a temporary sibling directory: all of
    them or none."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"the output path {out_dir} is a file; name a directory")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
        if not out_dir.exists():
            os.replace(tmp, out_dir)
            tmp = None
        else:
            for rel in files:
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / rel, out_dir / rel)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return [out_dir / rel for rel in files]


def export(
    cfg: ArchConfig,
    fmt: Format,
    out_dir: str | Path,
    *,
    scale_to: float | None = None,
    training: dict[str, Any] | None = None,
    target: str | None = None,
    vocab_size: int | None = None,
) -> list[Path]:
    """Write `cfg` as `fmt` into out_dir and return the files written.

    scale_to: resize to about this many parameters by the presets' scaling rule (vocabulary kept unless
    vocab_size is given). training: hyper-parameters over `default_training` (yaml and megatron). target: force a
    Hugging Face model type (hf only). Raises ConfigError, with one sentence, when the format cannot hold
    the architecture; nothing is written then.
    """
    files = render(cfg, fmt, scale_to=scale_to, training=training, target=target, vocab_size=vocab_size)
    return write(out_dir, files)


def study_archs(url: str, study: str, trial: int | None = None) -> list[tuple[int, ArchConfig]]:
    """[(trial number, architecture)] of one trial, or of the study's Pareto front when trial is None."""
    try:
        return trial_archs(url, study, pareto=trial is None, trial=trial)
    except ModuleNotFoundError as err:  # a base install reads no study database
        raise ConfigError(
            f"studies need the package {err.name}, which is not installed; pip install 'hybrid-nas[service]'"
        ) from None


@dataclass
class StudyExport:
    """What exporting a study's trials gives: the files (relative path -> text, or the paths once written),
    the line saying what to do with each trial's directory, and the trials the format cannot hold."""

    files: dict[str, str] = field(default_factory=dict)
    notes: dict[int, str] = field(default_factory=dict)  # trial -> how to use it ("DIR" stands for its directory)
    skipped: dict[int, str] = field(default_factory=dict)  # trial -> why the format cannot hold it
    patterns: dict[int, str] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)

    def skipped_lines(self) -> list[str]:
        return [f"trial {n} ({self.patterns[n]}): {why}" for n, why in self.skipped.items()]


def render_study(url: str, study: str, fmt: str, trial: int | None = None, **kwargs: Any) -> StudyExport:
    """Render one trial (its files at the top) or every Pareto-front trial (under trial-N/), written nowhere.

    One trial that the format cannot hold raises ConfigError naming the trial. For the front, the trials
    it can hold are rendered and the others listed in `skipped`; ConfigError only when none can be.
    """
    out = StudyExport()
    archs = study_archs(url, study, trial)
    for number, cfg in archs:
        out.patterns[number] = cfg.pattern
        try:
            rendered, how = render_with_note(cfg, fmt, **kwargs)
        except ConfigError as err:
            if trial is not None:
                raise ConfigError(f"trial {number} of {study} ({cfg.pattern}): {err}") from None
            out.skipped[number] = str(err)
            continue
        prefix = "" if trial is not None else f"trial-{number}/"
        out.files.update({prefix + name: text for name, text in rendered.items()})
        out.notes[number] = how
    if not out.files:
        reasons = set(out.skipped.values())
        if len(reasons) == 1:  # the same for every trial (an unknown --target, say): say it once
            which = "its Pareto trial" if len(archs) == 1 else f"any of its {len(archs)} Pareto trials"
            raise ConfigError(f"nothing written: {reasons.pop()} (study {study}, {which})")
        raise ConfigError(
            f"none of the {len(archs)} Pareto trials of {study} can be written as --format {fmt}: "
            + "; ".join(out.skipped_lines())
        )
    return out


def export_study(
    url: str,
    study: str,
    fmt: Format,
    out_dir: str | Path,
    *,
    trial: int | None = None,
    **kwargs: Any,
) -> StudyExport:
    """Export one trial's architecture into out_dir, or every Pareto-front trial the format can hold into
    out_dir/trial-N (the others in `.skipped`, trial -> reason)."""
    done = render_study(url, study, fmt, trial, **kwargs)
    done.written = write(Path(out_dir), done.files)
    return done
