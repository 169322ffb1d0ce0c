"""What every benchmark's report shares: the machine it ran on, the command that ran, and writing the table
(and, for the scripts that run studies, a profile for their --smoke run).

    lines = [f"`{command()}` on {machine()}", "", "| ... |"]
    write(args.out, lines)
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path

__all__ = ["DELTA_VARIANTS_HELP", "RECALL_SPEED", "command", "delta_variant_env", "delta_variants", "free_port",
           "machine", "project_path_for_ray", "recall_speed_study", "smoke_profile", "use_delta_variant", "write"]

RECALL_SPEED = ["synthetic_accuracy", "decode_tps"]  # the objectives of the studies the benchmarks run


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(gpu: bool = False) -> str:
    """`AMD EPYC 7B13, 2 cores, Python 3.11.7, torch 2.13.0` (+ the GPU's name with `gpu`, when there is one)."""
    parts = [_cpu(), f"{os.cpu_count()} cores", f"Python {platform.python_version()}"]
    if gpu or "torch" in sys.modules:  # with `gpu`, a driver that leaves torch to its workers imports it here
        import torch

        parts.append(f"torch {torch.__version__}")
        if gpu and torch.cuda.is_available():
            parts.insert(0, torch.cuda.get_device_name())
    return ", ".join(parts)


def command() -> str:
    """The command line that ran this script, as a reader would type it again."""
    return shlex.join(["python", os.path.relpath(sys.argv[0]), *sys.argv[1:]])  # "hybrid 1:7" quoted


def write(path: Path, lines: list[str]) -> None:
    """Write a report (its folder made if needed) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip("\n") + "\n")
    print(f"wrote {path}", flush=True)


def publish(path: Path, lines: list[str], smoke: bool) -> None:
    """A report's end: printed on a smoke run (which writes nothing), else written to `path`."""
    if smoke:
        print("\n".join(lines))
    else:
        write(path, lines)


def gpu_or_smoke(smoke: bool):
    """The device a GPU timing script runs on: the CPU for `--smoke`, else the CUDA GPU, or the script ends
    saying there is none."""
    import torch

    if smoke:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        sys.exit(f"{Path(sys.argv[0]).name} times a CUDA GPU; this machine has none (--smoke runs it tiny on the CPU)")
    return torch.device("cuda")


def families(spec: str, known) -> list[str]:
    """The comma-separated families of `spec`, each one of `known`; an unknown one ends the run, saying which."""
    chosen = [f.strip() for f in spec.split(",") if f.strip()]
    if unknown := [f for f in chosen if f not in known]:
        raise SystemExit(f"unknown family {unknown[0]!r}; choose from {', '.join(known)}")
    return chosen


def project_path_for_ray() -> None:
    """The repository first on the path, and benchmarks/ off it altogether: a script that starts Ray must
    import the project's `kernels` package, not this folder's kernels.py, and Ray's workers inherit the
    driver's path. Call it after importing this module and before importing the project."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(here.parent)] + [p for p in sys.path if Path(p or ".").resolve() != here]


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recall_speed_study(name: str, home: Path, *, params: float, trials: int, seed: int, profile, concurrency: int,
                       gpus: float, early_stopping: dict | None = None) -> dict:
    """A spec (as its YAML says it) for the benchmarks' search: the `hybrid-ratio` space at `params`, recall
    against decode speed, a seeded random sampler (the same architectures each time), its SQLite study and
    MLflow stores in `home`."""
    return {
        "name": name,
        "space": "hybrid-ratio",
        "objectives": [{"metric": m} for m in RECALL_SPEED],
        "constraints": {"params": {"budget": params, "tolerance": 0.35}},
        "sampler": "random",
        "seed": seed,
        "budget": {"trials": trials},
        "profile": profile,
        "concurrency": concurrency,
        "resources": {"cpus": 1, "gpus": gpus},
        "early_stopping": early_stopping or {"enabled": False},
        "storage": f"sqlite:///{home / 'studies.db'}",
        "tracking": f"sqlite:///{home / 'mlflow.db'}",
    }


def smoke_profile(params: float, lm_steps: int, task_steps: int) -> dict:
    """A proxy profile of seconds on a CPU for a study's --smoke run: `params` parameters, `lm_steps`
    language-modelling steps of 4 sequences of 32 tokens and `task_steps` of 8 on MQAR alone."""
    return {
        "name": "smoke", "params": params, "device": "cpu",
        "lm": {"seq_len": 32, "batch_size": 4, "tokens": lm_steps * 4 * 32, "eval_tokens": 256},
        "synthetic": {"tokens_per_task": task_steps * 8 * 32, "batch_size": 8, "eval_examples": 16,
                      "tasks": [{"name": "mqar", "settings": {"vocab_size": 64, "seq_len": 32, "num_kv_pairs": 4}}]},
        "throughput": {"contexts": [32], "decode_tokens": 2, "repeats": 1},
    }


DELTA_VARIANTS_HELP = ("comma-separated forms of the gated delta rule's wy kernel, each INVERSE or INVERSE:FORM "
                       "(KERNELS_DELTA_INVERSE and KERNELS_DELTA_WY, e.g. blocks,tiles:split; a bare INVERSE is "
                       "the fused form)")


def delta_variants(spec: str) -> list[str]:
    """`--variants` as a list ("" for the defaults alone)."""
    return [x for x in spec.split(",") if x] or [""]


def delta_variant_env(variant: str) -> dict[str, str]:
    """The environment that selects `variant`, INVERSE or INVERSE:FORM (the kernels read it at each call)."""
    inverse, _, form = variant.partition(":")
    return {"KERNELS_DELTA_INVERSE": inverse, "KERNELS_DELTA_WY": form or "fused"}


def use_delta_variant(variant: str) -> None:
    """Makes the next gated delta call use `variant` ("": whatever the environment already says)."""
    if variant:
        os.environ.update(delta_variant_env(variant))
