import copy
import json
import subprocess
import sys

import yaml
from profiles import MICRO

from workers.result import TrialResult


def nas(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_eval_prints_a_scorecard_and_writes_the_result(tmp_path):
    prof = tmp_path / "micro.yaml"
    prof.write_text(yaml.safe_dump(MICRO))
    out = tmp_path / "r" / "result.json"
    r = nas("eval", "--pattern", "M-*-", "--d-model", "32", "--profile", str(prof), "--json", str(out))
    assert r.returncode == 0, r.stderr
    for words in (
        "LM validation loss",
        "bits per byte",
        "accuracy: mqar",
        "synthetic mean accuracy",
        "decode tokens/s @48",
        "peak memory",
        "lm",
        "in_context_recall",
    ):
        assert words in r.stdout, words
    result = TrialResult.model_validate(json.loads(out.read_text()))
    assert result.status == "ok" and result.pattern == "M-*-" and result.profile == "micro"


def test_eval_of_a_preset_scales_it_to_the_profile(tmp_path):
    prof = tmp_path / "micro.yaml"
    micro = {**MICRO, "params": 2e5, "synthetic": {"tasks": []}, "lm": {**MICRO["lm"], "tokens": 2 * 4 * 32}}
    prof.write_text(yaml.safe_dump(micro))
    out = tmp_path / "r.json"
    r = nas("eval", "--preset", "mamba2-hybrid-8b", "--profile", str(prof), "--json", str(out))
    assert r.returncode == 0, r.stderr
    result = TrialResult.model_validate_json(out.read_text())
    assert result.pattern == "M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-"
    assert 1e5 < result.params < 4e5 and result.arch["vocab_size"] == 256


def test_a_failed_trial_exits_1_and_still_writes_its_result(tmp_path):
    bad = copy.deepcopy(MICRO)
    bad["lm"].update(tokens=30 * 4 * 32, optim={"lr": 1e6, "grad_clip": 1e9})
    prof = tmp_path / "bad.yaml"
    prof.write_text(yaml.safe_dump(bad))
    out = tmp_path / "r.json"
    r = nas("eval", "--pattern", "*-", "--d-model", "32", "--profile", str(prof), "--json", str(out))
    assert r.returncode == 1
    assert "diverged" in r.stdout
    assert TrialResult.model_validate_json(out.read_text()).failure.kind == "diverged"


def test_bad_eval_input_exits_2_before_training(tmp_path):
    for args, words in [
        (["--preset", "jambo"], "unknown preset 'jambo'"),
        (["--preset", "jamba", "--profile", "cpu-huge"], "unknown profile 'cpu-huge'"),
        (["--pattern", "M-?", "--d-model", "32"], "unknown layer symbol '?' at position 2"),
    ]:
        out = tmp_path / "never.json"
        r = nas("eval", *args, "--json", str(out))
        assert r.returncode == 2, r.stderr
        assert words in r.stderr and "Traceback" not in r.stderr
        assert not out.exists()
