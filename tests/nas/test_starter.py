"""`nas init`: a commented starter spec for this machine, which `nas run` accepts as written."""

import subprocess
import sys

import pytest

from nas.spec import load_spec
from nas.starter import Machine, starter_spec


@pytest.mark.parametrize(("machine", "profile", "gpus"), [(Machine(2, 0), "cpu-tiny", 0.0),
                                                          (Machine(16, 2), "gpu-small", 0.25)], ids=["cpu", "gpu"])
def test_the_starter_spec_fits_the_machine(tmp_path, machine, profile, gpus):
    text = starter_spec("mine", machine)
    (tmp_path / "mine.yaml").write_text(text)
    spec = load_spec(tmp_path / "mine.yaml")
    assert (spec.profile, spec.resources.gpus) == (profile, gpus)
    assert spec.concurrency == (8 if machine.gpus else 2)
    assert sum(line.count("#") > 0 for line in text.splitlines()) >= 12  # it explains itself


def test_nas_init_writes_once_and_says_how_to_run_it(tmp_path):
    def init(*args):
        return subprocess.run([sys.executable, "-m", "nas.cli", "init", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)

    r = init("first", "--gpus", "0")
    assert r.returncode == 0, r.stderr
    assert "run it with:  nas run first.yaml" in r.stdout and "no GPU" in r.stdout
    assert load_spec(tmp_path / "first.yaml").resources.gpus == 0
    again = init("first")
    assert again.returncode == 2 and "first.yaml exists" in again.stderr
    bad = init("a b")
    assert bad.returncode == 2 and "study name 'a b'" in bad.stderr and not (tmp_path / "a b.yaml").exists()
    r = init("big", "--gpus", "4", "--out", "specs/big.yaml")
    assert r.returncode == 0 and "4 GPUs" in r.stdout, r.stderr
    big = load_spec(tmp_path / "specs" / "big.yaml")
    assert (big.name, big.resources.gpus, big.concurrency) == ("big", 0.25, 16)
