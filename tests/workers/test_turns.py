"""Trials sharing a device take turns to measure speed (workers/turns.py), across real processes."""

import itertools
import multiprocessing as mp
import time

import pytest
import torch

from workers import turns


def trainer(root: str, seconds: float, out) -> None:
    import os

    os.environ[turns.ROOT_ENV] = root
    stamps = []
    with turns.running(torch.device("cpu")):
        end = time.time() + seconds
        while time.time() < end:
            turns.step()
            stamps.append(time.time())  # a step runs from here ...
            time.sleep(0.005)  # ... to here
            stamps.append(time.time())
        waited = turns.waited()
    out.put(("trainer", (stamps, waited)))


def measurer(root: str, delay: float, out) -> None:
    import os

    os.environ[turns.ROOT_ENV] = root
    time.sleep(delay)
    with turns.running(torch.device("cpu")), turns.alone():
        t0 = time.time()
        time.sleep(0.4)
        t1 = time.time()
    out.put(("measurer", (t0, t1)))


@pytest.mark.alone  # its processes' steps and measurements are sub-second windows
@pytest.mark.parametrize("measurers", [1, 2])
def test_the_other_trials_wait_while_one_measures_speed(tmp_path, measurers):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=trainer, args=(str(tmp_path), 2.5, out)) for _ in range(2)]
    procs += [ctx.Process(target=measurer, args=(str(tmp_path), 0.8 + 0.1 * i, out)) for i in range(measurers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    windows = sorted(w for who, w in results if who == "measurer")
    steps = [r[0] for who, r in results if who == "trainer"]
    waits = [r[1] for who, r in results if who == "trainer"]
    assert all(0.3 * measurers < w < 0.4 * measurers + 1.0 for w in waits)  # the measurements' time, once
    assert len(windows) == measurers and all(len(s) > 20 for s in steps)  # the trainers ran throughout
    for a, b in itertools.pairwise(windows):
        assert a[1] <= b[0]  # one measurement at a time
    for t0, t1 in windows:
        for s in steps:
            inside = [t for t in s if t0 < t < t1]
            assert not inside, f"a trainer stepped during a measurement: {inside[:3]}"
            assert any(t < t0 for t in s) and any(t > t1 for t in s)  # it stepped before and went on after


def test_outside_a_trial_turns_do_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(turns.ROOT_ENV, str(tmp_path))
    turns.step()
    with turns.alone():
        pass
    assert turns.waited() == 0.0 and not list(tmp_path.iterdir())  # no lock was ever taken
