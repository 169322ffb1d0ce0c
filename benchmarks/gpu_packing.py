"""How many trials should share a GPU? The same fixed set of trials at 1, 2, 4 and 8 per GPU.

    python benchmarks/gpu_packing.py                          # on a GPU machine: gpu-quick, 8 trials each way
    python benchmarks/gpu_packing.py --per-gpu 1,4 --profile gpu-small
    python benchmarks/gpu_packing.py --smoke                  # a tiny profile on the CPU, trials per CPU (CI)

Each packing runs one study on the embedded default (a fresh SQLite store and a local Ray instance): an
ablation grid whose cells are a fixed set of 8-layer 1:7 hybrids (four linear families, RoPE and NoPE),
so every packing trains exactly the same architectures. `resources: {gpus: 1/p}` and `concurrency: p ×
GPUs` put p trials on each GPU. For each packing: the wall time, the aggregate trials per hour, its ratio
to one trial per GPU, and the GPUs' mean utilisation and peak memory (NVML, sampled twice a second), and
whether any trial failed (an out-of-memory trial fails alone; the study goes on). Writes
`docs/benchmarks/gpu_packing.md` (`--out` elsewhere).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from _report import command, machine, project_path_for_ray, smoke_profile, write  # beside this script

project_path_for_ray()

from nas.runner import run_study
from nas.spec import StudySpec, validate

SMOKE_PROFILE = smoke_profile(5e4, lm_steps=4, task_steps=3)
BASE = {"pattern": "M-M-M-M-*-M-M-M-", "d_model": 256, "vocab_size": 256, "attention": {"heads": 4},
        "mamba2": {"d_state": 64, "head_dim": 32, "chunk_size": 64}}  # scaled to the profile's size
FACTORS = {"ssm": ["mamba2", "mamba1", "mlstm", "deltanet"], "pos": ["rope", "nope"]}


class GpuSampler:
    """NVML utilisation (percent) and used memory (bytes) of every GPU, every `period` seconds."""

    def __init__(self, period: float = 0.5):
        self.period, self.util, self.memory = period, [], []
        self._stop = threading.Event()
        self._thread = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # no NVML (no GPU, or nvidia-ml-py missing): nothing to sample
            self._nvml, self._handles = None, []

    def __enter__(self):
        if self._handles:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            for h in self._handles:
                self.util.append(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu)
                self.memory.append(self._nvml.nvmlDeviceGetMemoryInfo(h).used)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def spec(name: str, tmp: Path, profile, per: int, units: int, gpu: bool) -> StudySpec:
    from search_spaces import ArchConfig
    from search_spaces.scaling import scale
    from workers.profile import load_profile

    resources = {"cpus": 1, "gpus": 1 / per} if gpu else {"cpus": 1 / per, "gpus": 0}
    base = scale(ArchConfig.from_dict(BASE), load_profile(profile).params, vocab_size=256).to_dict()
    data = {
        "name": name,
        "kind": "ablation",
        "space": None,
        "ablation": {"base": base, "factors": FACTORS, "seeds": 1},
        "objectives": [{"metric": "lm_loss"}],
        "profile": profile,
        "resources": resources,
        "concurrency": per * units,
        "storage": f"sqlite:///{tmp / 'studies.db'}",
        "tracking": f"sqlite:///{tmp / 'mlflow.db'}",
    }
    return validate(StudySpec.model_validate(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="gpu-quick")
    ap.add_argument("--per-gpu", default=None,
                    help="trials per GPU (per CPU with --smoke), comma-separated (default 1,2,4,8; smoke 1,2)")
    ap.add_argument("--smoke", action="store_true", help="the tiny profile on CPUs; writes nothing")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/gpu_packing.md"))
    args = ap.parse_args()
    args.per_gpu = args.per_gpu or ("1,2" if args.smoke else "1,2,4,8")
    try:
        packings = [int(x) for x in args.per_gpu.split(",")]
        assert packings and all(p > 0 for p in packings)
    except (ValueError, AssertionError):
        raise SystemExit(f"--per-gpu: comma-separated positive integers (1,2,4,8), got {args.per_gpu!r}") from None
    import torch

    gpu = torch.cuda.is_available() and not args.smoke
    if not gpu and not args.smoke:
        raise SystemExit("gpu_packing.py measures trials sharing a GPU: run it on a GPU machine, or use --smoke")
    units = torch.cuda.device_count() if gpu else 1
    profile = SMOKE_PROFILE if args.smoke else args.profile
    rows = []
    for per in packings:
        with tempfile.TemporaryDirectory() as tmp:
            s = spec(f"pack-{per}", Path(tmp), profile, per, units, gpu)
            t0 = time.perf_counter()
            with GpuSampler() as gpus:
                summary = run_study(s, show_progress=False, track=False)
            wall = time.perf_counter() - t0
        c = summary.counts
        rows.append({
            "per": per, "trials": c["complete"], "failed": c["failed"], "wall": wall,
            "per_hour": 3600 * c["complete"] / wall,
            "util": sum(gpus.util) / len(gpus.util) if gpus.util else None,
            "memory": max(gpus.memory) if gpus.memory else None,
        })
        print(f"{per} per {'GPU' if gpu else 'CPU'}: {c['complete']} complete, {c['failed']} failed in "
              f"{wall:.0f} s ({rows[-1]['per_hour']:.0f} trials/h)", flush=True)
    one = next((r for r in rows if r["per"] == 1), rows[0])
    unit = "GPU" if gpu else "CPU"
    name = profile if isinstance(profile, str) else "smoke"
    cells = len(FACTORS["ssm"]) * len(FACTORS["pos"])
    lines = [
        f"# Trials per {unit}", "",
        f"`{command()}` on {machine(gpu=gpu)}; {units} {unit}(s); profile `{name}`; the same {cells} "
        "architectures each way.", "",
        f"| trials per {unit} | complete | failed | wall s | trials/hour | × one per {unit} | mean GPU util "
        "| peak GPU memory |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        util = f"{r['util']:.0f}%" if r["util"] is not None else "—"
        mem = f"{r['memory'] / 2**30:.1f} GiB" if r["memory"] is not None else "—"
        lines.append(f"| {r['per']} | {r['trials']} | {r['failed']} | {r['wall']:.0f} | {r['per_hour']:.0f} | "
                     f"{r['per_hour'] / one['per_hour']:.2f} | {util} | {mem} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.smoke:
        write(args.out, text.splitlines())


if __name__ == "__main__":
    main()
