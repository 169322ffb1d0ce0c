"""The commented starter spec `nas init` writes: a study sized for this machine, GPUs or not.

    machine = this_machine()                       # Machine(cpus=2, gpus=0)
    text = starter_spec("my-study", machine)       # YAML with a comment on every choice; load_spec reads it

On a CPU machine the trials use the `cpu-tiny` profile, one CPU each, as many at once as there are CPUs;
on a GPU machine the `gpu-small` profile, four trials sharing each GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from nas.spec import StudySpec, spec_from_text

__all__ = ["Machine", "starter_spec", "this_machine"]


@dataclass(frozen=True)
class Machine:
    cpus: int
    gpus: int

    def describe(self) -> str:
        gpus = f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}" if self.gpus else "no GPU"
        return f"{self.cpus} CPU{'s' if self.cpus != 1 else ''}, {gpus}"


def _gpus() -> int:
    """NVIDIA GPUs as the driver lists them (what Ray counts), without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    n = sum(1 for line in out.splitlines() if line.startswith("GPU "))
    if visible is not None:
        n = min(n, len([v for v in visible.split(",") if v.strip()]))
    return n


def this_machine() -> Machine:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Machine(cpus=max(1, cpus), gpus=_gpus())


def _lines(rows: list[tuple[str, str]]) -> str:
    """YAML lines with their comments lined up at one column."""
    width = max(len(text) for text, comment in rows if comment) + 2
    return "".join(f"{text:<{width}}# {comment}\n" if comment else f"{text}\n" for text, comment in rows)


def starter_spec(name: str, machine: Machine) -> str:
    """The spec's text; it loads with `load_spec` (checked here, so a bad name is refused in one sentence)."""
    gpu = machine.gpus > 0
    concurrency = 4 * machine.gpus if gpu else max(1, min(machine.cpus, 8))
    rows = [
        (f"name: {name}", ""),
        ("kind: search", "or ablation (a base, factors and seeds: README.md)"),
        ("description: The attention to SSM ratio, placement and SSM family of an 8-layer hybrid.", ""),
        ("space: hybrid-ratio", "search_spaces/spaces/: hybrid-ratio, moe-placement, positional, full"),
        ("objectives:", "1-3 metrics of a TrialResult, each maximised or minimised"),
        ("  - {metric: synthetic_accuracy, direction: maximize}", "recall on the profile's synthetic tasks"),
        ("  - {metric: decode_tps, direction: maximize}", "decode tokens/s at the profile's longest context"),
        ("constraints:", ""),
        (f"  params: {{budget: {'2.5e+7' if gpu else '2.0e+5'}, tolerance: 0.3}}", "the width is solved to land here"),
        ("sampler: nsga2", "tpe, gp, random, grid"),
        (f"budget: {{trials: {64 if gpu else 16}, hours: {8 if gpu else 1}}}", "whichever comes first"),
        (f"profile: {'gpu-small' if gpu else 'cpu-tiny'}",
         "workers/profiles/: cpu-tiny, cpu-demo, gpu-small, gpu-medium"),
        ("seeds: 1", "seeds per trial; the objectives are their mean"),
        ("resources: {cpus: 2, gpus: 0.25}" if gpu else "resources: {cpus: 1, gpus: 0}",
         "four trials share a GPU" if gpu else "no GPU here: each trial trains on one CPU"),
        (f"concurrency: {concurrency}", "trials in flight at once"),
        (f"early_stopping: {{enabled: {'true' if gpu else 'false'}}}",
         "MO-ASHA: successive halving of the token budget"),
    ]
    text = (
        f"# A study spec written by `nas init` for this machine ({machine.describe()}).\n"
        f"# Run it with `nas run {name}.yaml`; run it again to resume it. Every key: README.md, \"Searching\".\n"
        + _lines(rows)
    )
    spec: StudySpec = spec_from_text(text, "the starter spec")
    assert spec.name == name
    return text
