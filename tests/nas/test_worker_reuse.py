"""GPU jobs run in Ray workers kept for later jobs, each job on the GPU Ray assigned it.

Ray is started in a subprocess with two GPUs it is told about (no CUDA here): what a kept worker sees of
CUDA_VISIBLE_DEVICES and its GPU ids, and which processes run jobs one after another."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nas.executor import gpu_index

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, os, sys, time
sys.path.insert(0, "tests")
import ray
from profiles import MICRO
from nas.executor import Job, RayExecutor, job_options, start_local_ray

ARCH = {"pattern": "M-*-", "d_model": 32, "attention": {"heads": 2}, "mamba2": {"d_state": 8, "head_dim": 16}}
FAKE = int(os.environ.get("FAKE_GPUS", "0"))  # GPUs Ray is told about on a machine without CUDA
start_local_ray(num_cpus=2, num_gpus=FAKE or None)
PROFILE = MICRO if FAKE else {**MICRO, "device": "auto"}
ex = RayExecutor()

@ray.remote(max_calls=0)
def probe():
    return os.environ.get("CUDA_VISIBLE_DEVICES"), [str(i) for i in ray.get_gpu_ids()]

kept = ray.get(probe.options(**job_options(Job(trial=0, arch=ARCH, profile=MICRO, gpus=0.5))).remote())
fresh = ray.get(probe.options(**job_options(Job(trial=0, arch=ARCH, profile=MICRO, gpus=0.5,
                                                reuse_worker=False))).remote())

devices = []

def pids(reuse):
    out = []
    for i in range(3):  # one after another
        ex.submit(Job(trial=i, arch=ARCH, profile=PROFILE, gpus=0.5, budget=0.25, reuse_worker=reuse))
        done = []
        while not done:
            done = ex.wait(timeout=1.0)
        assert done[0].error is None, done[0].error
        devices.extend(r.device for r in done[0].results)
        out.append(sorted({r["pid"] for r in ex.progress()}))
    return out

print(json.dumps({"kept": kept, "fresh": fresh, "reused": pids(True), "not_reused": pids(False),
                  "devices": devices}))
ex.shutdown()
"""


def test_gpu_index_maps_rays_ids_to_cuda_indices():
    assert gpu_index("1", None) == 1 and gpu_index(0, "") == 0
    assert gpu_index("3", "2,3") == 1  # a node started with CUDA_VISIBLE_DEVICES=2,3
    assert gpu_index("GPU-ab", "GPU-cd,GPU-ab") == 1
    with pytest.raises(RuntimeError, match="not among this worker's visible devices"):
        gpu_index("5", "2,3")


def run_jobs(fake_gpus: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["FAKE_GPUS"] = str(fake_gpus)
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def check(seen: dict) -> None:
    # a kept worker sees the node's devices (none set here) and selects the one of its GPU id itself ...
    visible, ids = seen["kept"]
    assert visible is None and len(ids) == 1
    # ... where Ray narrows a fresh worker's view to its GPU
    visible, ids = seen["fresh"]
    assert visible == ids[0]
    reused = [p for ps in seen["reused"] for p in ps]
    assert len(reused) == 3 and len(set(reused)) < 3  # a later job ran in an earlier job's worker
    fresh = [p for ps in seen["not_reused"] for p in ps]
    assert len(fresh) == 3 and len(set(fresh)) == 3  # reuse_worker off: a new process per GPU job


def test_gpu_jobs_reuse_their_workers_and_see_every_gpu():
    seen = run_jobs(fake_gpus=2)
    check(seen)
    assert set(seen["devices"]) == {"cpu"}


@pytest.mark.gpu
def test_gpu_jobs_in_kept_workers_train_on_their_gpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    seen = run_jobs(fake_gpus=0)
    check(seen)
    assert set(seen["devices"]) == {torch.cuda.get_device_name(0)}
