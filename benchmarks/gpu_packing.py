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
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from _report import command, machine, project_path_for_ray, smoke_profile, write  # beside this script

project_path_for_ray()

from nas.reader import study_trials
from nas.runner import run_study
from nas.spec import StudySpec, validate

SMOKE_PROFILE = smoke_profile(5e4, lm_steps=4, task_steps=3)
BASE = {"pattern": "M-M-M-M-*-M-M-M-", "d_model": 256, "vocab_size": 256, "attention": {"heads": 4},
        "mamba2": {"d_state": 64, "head_dim": 32, "chunk_size": 64}}  # scaled to the profile's size
FACTORS = {"ssm": ["mamba2", "mamba1", "mlstm", "deltanet"], "pos": ["rope", "nope"]}
FAULT_FACTORS = {"ssm": FACTORS["ssm"], "mlp.ratio": [4.0, 250.0]}  # --oom: the 250× models cannot fit


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

    @property
    def count(self) -> int:
        """The GPUs sampled: `util` and `memory` hold one sample of each in turn (GPU i at i, i + count, ...)."""
        return len(self._handles)

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


def spec(name: str, tmp: Path, profile, per: int, units: int, gpu: bool, factors=FACTORS) -> StudySpec:
    from search_spaces import ArchConfig
    from search_spaces.scaling import scale
    from workers.profile import load_profile

    resources = {"cpus": 1, "gpus": 1 / per} if gpu else {"cpus": 1 / per, "gpus": 0}
    base = scale(ArchConfig.from_dict(BASE), load_profile(profile).params, vocab_size=256).to_dict()
    data = {
        "name": name,
        "kind": "ablation",
        "space": None,
        "ablation": {"base": base, "factors": factors, "seeds": 1},
        "objectives": [{"metric": "lm_loss"}],
        "profile": profile,
        "resources": resources,
        "concurrency": per * units,
        "storage": f"sqlite:///{tmp / 'studies.db'}",
        "tracking": f"sqlite:///{tmp / 'mlflow.db'}",
    }
    return validate(StudySpec.model_validate(data))


class Mps:
    """The CUDA MPS daemon for the duration of a block (`nvidia-cuda-mps-control -d`), its pipes in a
    temporary folder; `available` is False where the image has no daemon or it will not start."""

    def __init__(self, tmp: Path):
        self.dirs = {"CUDA_MPS_PIPE_DIRECTORY": tmp / "mps-pipe", "CUDA_MPS_LOG_DIRECTORY": tmp / "mps-log"}
        self.available, self.why = shutil.which("nvidia-cuda-mps-control") is not None, "no nvidia-cuda-mps-control"

    def __enter__(self):
        if not self.available:
            return self
        for k, d in self.dirs.items():
            d.mkdir(parents=True, exist_ok=True)
            os.environ[k] = str(d)  # the Ray workers started after this inherit it
        r = subprocess.run(["nvidia-cuda-mps-control", "-d"], capture_output=True, text=True)
        if r.returncode != 0:
            self.available, self.why = False, (r.stderr or r.stdout).strip() or f"exit {r.returncode}"
            self._unset()
        return self

    def _unset(self) -> None:
        for k in self.dirs:
            os.environ.pop(k, None)

    def __exit__(self, *exc) -> None:
        if self.available:
            subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, capture_output=True)
            time.sleep(1)
        self._unset()


def measure(name: str, profile, per: int, units: int, gpu: bool, factors=FACTORS) -> dict:
    """One packing: a fresh store and Ray instance, the study to its end, NVML sampled throughout."""
    with tempfile.TemporaryDirectory() as tmp:
        s = spec(f"pack-{per}", Path(tmp), profile, per, units, gpu, factors)
        t0 = time.perf_counter()
        with GpuSampler() as gpus:
            summary = run_study(s, show_progress=False, track=False)
        wall = time.perf_counter() - t0
        failures = [r.failure for r in study_trials(s.storage_url, s.name) if r.state == "FAIL"]
    c = summary.counts
    row = {
        "per": per, "trials": c["complete"], "failed": c["failed"], "wall": wall,
        "per_hour": 3600 * c["complete"] / wall, "failures": failures,
        "util": sum(gpus.util) / len(gpus.util) if gpus.util else None,
        "memory": max(gpus.memory) if gpus.memory else None,
    }
    print(f"{name}: {c['complete']} complete, {c['failed']} failed in {wall:.0f} s "
          f"({row['per_hour']:.0f} trials/h)", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="gpu-quick")
    ap.add_argument("--budget", type=float, default=1.0,
                    help="scale the profile's token budgets (0.25: a quarter of the tokens; the overheads stay)")
    ap.add_argument("--per-gpu", default=None,
                    help="trials per GPU (per CPU with --smoke), comma-separated (default 1,2,4,8; smoke 1,2)")
    ap.add_argument("--mps", default="", metavar="P,...",
                    help="these packings once more under CUDA MPS (where the image has its daemon)")
    ap.add_argument("--oom", type=int, default=0, metavar="P",
                    help="the fault run: at P per GPU, four models too wide for a trial's share of the GPU beside "
                         "four that fit; the four must finish")
    ap.add_argument("--smoke", action="store_true", help="the tiny profile on CPUs; writes nothing")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/gpu_packing.md"))
    args = ap.parse_args()
    args.per_gpu = args.per_gpu or ("1,2" if args.smoke else "1,2,4,8")
    try:
        packings = [int(x) for x in args.per_gpu.split(",")]
        mps = [int(x) for x in args.mps.split(",")] if args.mps else []
        assert packings and all(p > 0 for p in packings + mps) and args.oom >= 0
    except (ValueError, AssertionError):
        raise SystemExit(f"--per-gpu / --mps: comma-separated positive integers (1,2,4,8), got "
                         f"{args.per_gpu!r} / {args.mps!r}") from None
    import torch

    from workers.profile import load_profile

    gpu = torch.cuda.is_available() and not args.smoke
    if not gpu and not args.smoke:
        raise SystemExit("gpu_packing.py measures trials sharing a GPU: run it on a GPU machine, or use --smoke")
    units = torch.cuda.device_count() if gpu else 1
    unit = "GPU" if gpu else "CPU"
    profile = SMOKE_PROFILE if args.smoke else args.profile
    if args.budget != 1.0:
        profile = load_profile(profile).scaled(args.budget).model_dump()
    rows = [{"mode": "", **measure(f"{per} per {unit}", profile, per, units, gpu)} for per in packings]
    if mps:
        with tempfile.TemporaryDirectory() as tmp, Mps(Path(tmp)) as daemon:
            if daemon.available:
                rows += [{"mode": "MPS", **measure(f"{per} per {unit}, MPS", profile, per, units, gpu)} for per in mps]
            else:
                print(f"CUDA MPS: not measured ({daemon.why})", flush=True)
    fault = None
    if args.oom:  # no out-of-memory retries below the whole batch: a model that cannot fit it fails
        p = load_profile(profile)
        strict = p.model_copy(update={"min_micro_batch_size": p.lm.batch_size}).model_dump()
        fault = measure(f"fault run, {args.oom} per {unit}", strict, args.oom, units, gpu, FAULT_FACTORS)
    one = next((r for r in rows if r["per"] == 1 and not r["mode"]), rows[0])
    name = profile if isinstance(profile, str) else profile.get("name", "smoke")
    budget = f" at {args.budget:g} of its tokens" if args.budget != 1.0 else ""
    cells = len(FACTORS["ssm"]) * len(FACTORS["pos"])
    lines = [
        f"# Trials per {unit}", "",
        f"`{command()}` on {machine(gpu=gpu)}; {units} {unit}(s); profile `{name}`{budget}; the same {cells} "
        "architectures each way (8-layer 1:7 hybrids: four linear families, RoPE and NoPE).", "",
        f"| trials per {unit} | complete | failed | wall s | trials/hour | × one per {unit} | mean GPU util "
        "| peak GPU memory |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        util = f"{r['util']:.0f}%" if r["util"] is not None else "—"
        mem = f"{r['memory'] / 2**30:.1f} GiB" if r["memory"] is not None else "—"
        lines.append(f"| {r['per']}{' (MPS)' if r['mode'] else ''} | {r['trials']} | {r['failed']} | {r['wall']:.0f} | "
                     f"{r['per_hour']:.0f} | {r['per_hour'] / one['per_hour']:.2f} | {util} | {mem} |")
    if mps and not any(r["mode"] for r in rows):
        lines += ["", "CUDA MPS was asked for and not measured: the image's daemon did not start."]
    if fault is not None:
        reasons = sorted({f["reason"] for f in fault["failures"] if f})
        lines += [
            "", f"## Trials out of memory beside healthy ones, {args.oom} per {unit}", "",
            f"The four families with RoPE, each with its MLP at 4× and at {FAULT_FACTORS['mlp.ratio'][1]:g}× "
            f"d_model, trained with the whole batch as one micro-batch (no out-of-memory retries): the wide "
            f"models' activations cannot fit a trial's share of the {unit} (a trial holds at most its "
            f"`resources.gpus` fraction of the memory). {fault['trials']} trials completed and {fault['failed']} "
            f"failed in {fault['wall']:.0f} s; the study went on to its end.", "",
            *(f"- failure: {r}" for r in reasons),
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.smoke:
        write(args.out, text.splitlines())


if __name__ == "__main__":
    main()
