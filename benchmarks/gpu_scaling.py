"""Does a study spread over several GPUs? The same study on a Ray cluster of one GPU, then of two, ...

    python benchmarks/gpu_scaling.py                          # 1 GPU, then every GPU of the machine
    python benchmarks/gpu_scaling.py --gpus 1,2 --trials 32 --budget 0.5 --keep ./scaling
    python benchmarks/gpu_scaling.py --smoke                  # CPUs for GPUs, a tiny profile (CI)

For each GPU count n, a Ray head is started with `ray start --head --num-gpus n` (on the first n GPUs) and
the study runs as a user would run it against a cluster, `nas run SPEC --ray-address HEAD`: nothing but the
cluster's address differs between the counts. The study: the `hybrid-ratio` space with a seeded random
sampler (every count trains the same architectures), P trials per GPU (`resources.gpus: 1/P`,
`concurrency: P × n`), every trial to the end, MLflow recording. A warm-up study first runs the same
architectures at a small budget, so that every count finds Triton's compiled kernels and tuning results on
disk, as a study does after its first trials (`--no-warm-up` leaves the caches as they are).

Per count: the wall time of `nas run` and the study's span (its first trial's start to its last one's
end), trials per hour over the span and their ratio to one GPU, the job time (the sum of every job's wall
time), and each GPU's mean utilisation and peak memory (NVML, twice a second). Writes
`docs/benchmarks/gpu_scaling.md` (`--out` elsewhere) after each count; `--keep DIR` keeps each count's
study and MLflow stores and its `nas run` log (DIR/gpus-N/), for `nas pareto` and the dashboard.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from _report import (  # beside this script
    command,
    free_port,
    machine,
    project_path_for_ray,
    recall_speed_study,
    smoke_profile,
    write,
)
from gpu_packing import GpuSampler

project_path_for_ray()

from nas.reader import study_trials

ROOT = Path(__file__).resolve().parents[1]
SMOKE_PROFILE = smoke_profile(5e4, lm_steps=4, task_steps=3)


def study(name: str, home: Path, args, profile, per: int, units: int, gpu: bool) -> dict:
    """The study as a user's spec file says it: the same for every count but its concurrency."""
    return recall_speed_study(name, home, params=args.params, trials=args.trials, seed=args.seed, profile=profile,
                              concurrency=per * units, gpus=1 / per if gpu else 0.0)


class RayHead:
    """`ray start --head --block` with `gpus` GPUs (the first ones) and `cpus` CPUs, on a free port, for
    the duration of a block; its log in `log`."""

    def __init__(self, gpus: int, cpus: int, log: Path):
        self.gpus, self.cpus, self.log = gpus, cpus, log
        self.address = f"127.0.0.1:{free_port()}"

    def __enter__(self) -> RayHead:
        self.temp = tempfile.mkdtemp(prefix="nasray-", dir="/tmp")  # short: socket paths have a length limit
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(self.gpus))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
             f"--port={self.address.rsplit(':', 1)[1]}", f"--num-gpus={self.gpus}", f"--num-cpus={self.cpus}",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.temp}"],
            env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise SystemExit(f"the Ray head did not start; its log:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        shutil.rmtree(self.temp, ignore_errors=True)


def run(name: str, home: Path, args, profile, per: int, units: int, gpu: bool, cpus: int) -> dict:
    """One count: a Ray head of `units` GPUs (CPUs with --smoke), the study run on it to its end by
    `nas run`, NVML sampled throughout."""
    home.mkdir(parents=True, exist_ok=True)
    spec = home / "study.yaml"
    spec.write_text(yaml.safe_dump(study(name, home, args, profile, per, units, gpu), sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NAS_", "RAY_ADDRESS"))}
    env.update(NAS_HOME=str(home), PYTHONUNBUFFERED="1", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])]))
    with RayHead(units if gpu else 0, cpus, home / "ray-head.log") as head, GpuSampler() as sampled:
        t0 = time.perf_counter()
        with (home / "nas-run.log").open("w") as log:
            cmd = [sys.executable, "-m", "nas.cli", "run", str(spec), "--ray-address", head.address]
            code = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode
        wall = time.perf_counter() - t0
    if code != 0:
        tail = (home / "nas-run.log").read_text()[-3000:]
        raise SystemExit(f"nas run of {name} exited {code}; its log:\n{tail}")
    url = f"sqlite:///{home / 'studies.db'}"
    rows = study_trials(url, name)
    # the study's own span, from its first trial's start to its last one's end: the trials per hour of the
    # search itself, without `nas run`'s start (imports, joining the cluster), the same at every count
    ts = optuna.load_study(study_name=name, storage=url).trials
    span = (max(t.datetime_complete for t in ts if t.datetime_complete)
            - min(t.datetime_start for t in ts if t.datetime_start)).total_seconds()
    complete = [r for r in rows if r.state == "COMPLETE"]
    trained = [r for r in rows if r.job_seconds]  # a repeated architecture takes its twin's result: no job
    n = sampled.count or 1
    row = {
        "units": units, "wall": wall, "span": span, "complete": len(complete),
        "failed": sum(r.state == "FAIL" for r in rows), "trained": len(trained),
        "job_s": sum(r.job_seconds for r in trained), "per_hour": 3600 * len(complete) / span,
        "util": [sum(u) / len(u) for u in (sampled.util[i::n] for i in range(units))] if sampled.util else None,
        "memory": [max(sampled.memory[i::n]) for i in range(units)] if sampled.memory else None,
    }
    print(f"{name}, {units} {'GPU' if gpu else 'CPU'}(s): {row['complete']} complete, {row['failed']} failed in "
          f"{span:.0f} s ({row['per_hour']:.0f} trials/h; nas run {wall:.0f} s)", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", default=None, help="GPU counts, comma-separated (default: 1 and all of the machine's)")
    ap.add_argument("--per-gpu", type=int, default=4, help="trials sharing one GPU")
    ap.add_argument("--profile", default="gpu-quick")
    ap.add_argument("--budget", type=float, default=0.5, help="scale the profile's token budgets")
    ap.add_argument("--params", type=float, default=None, help="the space's parameter budget (default: the profile's)")
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--warm-up", type=float, default=0.05, metavar="BUDGET",
                    help="the warm-up study's budget (a fraction of the profile's tokens)")
    ap.add_argument("--no-warm-up", dest="warm_up", action="store_const", const=0.0)
    ap.add_argument("--keep", type=Path, default=None, help="keep each count's stores and logs under DIR/gpus-N")
    ap.add_argument("--smoke", action="store_true", help="CPUs in place of GPUs, a tiny profile; writes nothing")
    ap.add_argument("--out", type=Path, default=Path("docs/benchmarks/gpu_scaling.md"))
    args = ap.parse_args()
    import torch

    from workers.profile import load_profile

    gpu = torch.cuda.is_available() and not args.smoke
    if not gpu and not args.smoke:
        raise SystemExit("gpu_scaling.py spreads a study over GPUs: run it on a GPU machine, or use --smoke")
    have = torch.cuda.device_count() if gpu else os.cpu_count() or 1
    try:
        counts = [int(x) for x in (args.gpus or ("1,2" if args.smoke else f"1,{have}")).split(",")]
        assert counts and all(0 < c <= have for c in counts) and args.per_gpu > 0
    except (ValueError, AssertionError):
        raise SystemExit(f"--gpus: comma-separated counts between 1 and the machine's {have}, got {args.gpus!r}") \
            from None
    counts = sorted(set(counts))
    if args.smoke:
        args.trials, args.per_gpu, args.warm_up = 4, 1, 0.0
    profile = SMOKE_PROFILE if args.smoke else args.profile
    base = load_profile(profile)
    args.params = args.params or base.params
    cpus = max(1, (os.cpu_count() or 1) // have)  # each count gets its GPUs' share of the machine's cores
    unit = "GPU" if gpu else "CPU"
    rows: list[dict] = []
    warm = None

    def table() -> str:
        lines = [
            f"# One study on 1 to {counts[-1]} {unit}s", "",
            f"`{command()}` on {machine(gpu=gpu)}; {have} {unit}s. The study: the `hybrid-ratio` space at "
            f"{args.params / 1e6:g}M parameters, profile `{base.name}` at {args.budget:g} of its tokens, {args.trials} "
            f"trials (random sampler, seed {args.seed}: the same architectures each time; a repeated one takes its "
            f"twin's result), {args.per_gpu} per {unit}, every trial to the end, run by `nas run SPEC --ray-address` "
            f"of a Ray head started with that many {unit}s."
            + (f" A warm-up study ({args.warm_up:g} of the tokens, {warm:.0f} s) filled the kernel caches first."
               if warm else ""), "",
            f"| {unit}s | complete | trained | `nas run` wall | study span | trials/hour | × one {unit} | job time "
            f"| mean util per {unit} | peak memory per {unit} |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for r in rows:
            util = " / ".join(f"{u:.0f}%" for u in r["util"]) if r["util"] else "—"
            mem = " / ".join(f"{m / 2**30:.1f} GiB" for m in r["memory"]) if r["memory"] else "—"
            lines.append(f"| {r['units']} | {r['complete']} | {r['trained']} | {r['wall']:.0f} s | {r['span']:.0f} s "
                         f"| {r['per_hour']:.0f} "
                         f"| {r['per_hour'] / rows[0]['per_hour']:.2f} | {r['job_s']:.0f} s | {util} | {mem} |")
        return "\n".join(lines) + "\n"

    with tempfile.TemporaryDirectory() as d:
        keep = args.keep or Path(d)
        if args.warm_up:
            t0 = time.perf_counter()
            run("warm-up", keep / "warm-up", args, base.scaled(args.warm_up).model_dump(), args.per_gpu, counts[-1],
                gpu, cpus * counts[-1])
            warm = time.perf_counter() - t0
        scaled = base.scaled(args.budget).model_dump() if args.budget != 1.0 else profile
        for n in counts:
            rows.append(run("scaling", keep / f"gpus-{n}", args, scaled, args.per_gpu, n, gpu, cpus * n))
            if not args.smoke:  # the table so far: a run cut short keeps the counts it measured
                write(args.out, table().splitlines())
    print(table())


if __name__ == "__main__":
    main()
