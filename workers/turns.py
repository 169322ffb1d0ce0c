"""Speed measured with the device to itself, while other trials share it.

Four trials on one GPU (or two on two CPU cores) train side by side; when one of them times its prefill
and decoding, the others' kernels would run in between and its figure would say as much about its
neighbours as about itself (the same architecture measured 1.6K and 4.4K decode tokens/s in two packed
studies on an H200: docs/gpu-studies.md). So the trials of a machine take turns: every trial holds its
device *shared* while it runs, and a trial about to measure speed asks for it *alone*; the others give
way at their next training or scoring step (after their queued kernels finish) and wait there until the
measurement is done. A measurement takes about a second per trial (benchmarks/trial_phases.py).

Two advisory file locks per device (`flock`, released by the kernel if a process dies), in the host's
temporary directory:

- `intent`: a trial that wants the device alone takes it exclusively first, so that others see it at their
  next step (a trial checks it without blocking: one system call per step);
- `busy`: every trial holds it shared while it runs; the measurer takes it exclusively once the others
  have let go.

    with turns.running(device):        # the whole trial (workers.evaluate)
        ... turns.step() ...           # each training or scoring step: give way if someone measures
        with turns.alone():            # the speed measurement (workers.score.throughput)
            ...

Outside `running` (a bare `throughput` call, the tests), `step` and `alone` do nothing; `NAS_TURNS=off`
turns the whole scheme off (speed timed among the other trials, as `benchmarks/speed_noise.py` compares).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

__all__ = ["alone", "device_key", "running", "step", "waited"]

ROOT_ENV = "NAS_TURNS_DIR"  # where the lock files live (default: <tmp>/hybrid-nas-turns)


def device_key(device: torch.device) -> str:
    """A name for the physical device, the same in every process of the host: a GPU's UUID, else `cpu`."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        uuid = getattr(props, "uuid", None)
        return "gpu-" + re.sub(r"[^A-Za-z0-9-]", "", str(uuid) if uuid is not None else props.pci_bus_id)
    return "cpu"


class _Turns:
    def __init__(self, key: str, device: torch.device):
        root = Path(os.environ.get(ROOT_ENV) or Path(tempfile.gettempdir()) / "hybrid-nas-turns")
        root.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.waited = 0.0  # seconds spent giving way
        self.intent = os.open(root / f"{key}.intent", os.O_RDWR | os.O_CREAT, 0o666)
        self.busy = os.open(root / f"{key}.busy", os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self.busy, fcntl.LOCK_SH)

    def close(self) -> None:
        os.close(self.busy)  # closing releases the locks
        os.close(self.intent)

    def _quiesce(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # this trial's queued kernels finish before it gives way

    def step(self) -> None:
        try:
            fcntl.flock(self.intent, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # a trial waits to measure: let it have the device
            t0 = time.perf_counter()
            self._quiesce()
            fcntl.flock(self.busy, fcntl.LOCK_UN)
            fcntl.flock(self.intent, fcntl.LOCK_SH)  # until it is done
            fcntl.flock(self.intent, fcntl.LOCK_UN)
            fcntl.flock(self.busy, fcntl.LOCK_SH)
            self.waited += time.perf_counter() - t0
        else:
            fcntl.flock(self.intent, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        self._quiesce()
        fcntl.flock(self.busy, fcntl.LOCK_UN)
        fcntl.flock(self.intent, fcntl.LOCK_EX)  # the others see it at their next step ...
        try:
            fcntl.flock(self.busy, fcntl.LOCK_EX)  # ... and let go of the device
            try:
                yield
            finally:
                self._quiesce()
                fcntl.flock(self.busy, fcntl.LOCK_SH)  # back to sharing (the intent lock keeps measurers out)
        finally:
            fcntl.flock(self.intent, fcntl.LOCK_UN)


_current: _Turns | None = None


@contextlib.contextmanager
def running(device: torch.device) -> Iterator[None]:
    """This process runs a trial on `device` (shared with the other trials of the host) until the block ends."""
    global _current
    if _current is not None or os.environ.get("NAS_TURNS") == "off":  # nested: the outer block holds it
        yield
        return
    _current = _Turns(device_key(device), device)
    try:
        yield
    finally:
        _current.close()
        _current = None


def step() -> None:
    """A training or scoring step is about to start: first give way to a trial that measures speed."""
    if _current is not None:
        _current.step()


def waited() -> float:
    """Seconds this trial has spent giving way so far (0 outside a trial): rates leave them out."""
    return _current.waited if _current is not None else 0.0


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """The device to this trial alone for the block: the host's other trials wait at their next step."""
    if _current is None:
        yield
        return
    with _current.alone():
        yield
