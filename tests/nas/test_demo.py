"""What `nas demo` says after its table: read from the finished study, never written in advance."""

from pathlib import Path

from studyutil import add_finished

from nas.demo import chance, findings
from nas.spec import load_spec

DEMO = Path(__file__).parents[2] / "nas" / "studies" / "demo.yaml"


def demo_spec(urls):
    spec = load_spec(DEMO)
    return spec.model_copy(update=urls)


def row(ratio, ssm, recall, tps):
    sym = {"mamba2": "M", "mlstm": "X"}[ssm]
    pattern = {"0": f"{sym}-{sym}-{sym}-{sym}-", "1:1": f"{sym}-*-{sym}-*-", "all": "*-*-*-*-"}[ratio]
    return {"params": {"attn_ratio": ratio, "ssm": ssm, "placement": "even"}, "pattern": pattern,
            "metrics": {"synthetic_accuracy": recall, "decode_tps": tps}}


def test_the_demo_says_which_front_trials_carry_attention_and_how_they_recall(urls):
    spec = demo_spec(urls)
    add_finished(spec, [
        row("0", "mamba2", 0.07, 900.0),  # trial 0: fastest, on the front
        row("0", "mlstm", 0.06, 800.0),  # trial 1: dominated
        row("1:1", "mamba2", 0.30, 700.0),  # trial 2: front
        row("all", "mamba2", 0.36, 500.0),  # trial 3: front, all attention
        {**row("1:1", "mlstm", 0.0, 0.0), "failed": True},
    ])
    lines = findings(spec)
    text = "\n".join(lines)
    assert "2 of its 3 trials carry attention (trial 2, 3); the other is a pure SSM (trial 0)." in text
    assert "trials with attention 0.330 on average (2, best 0.360); pure SSMs 0.065 (2, best 0.070)" in text
    assert f"guessing scores {1 / 16:.3f}" in text and "Attention recalls better in this run." in text
    assert "850 tokens/s for pure SSMs against 600 with attention" in text
    assert lines[-1].startswith("Profile cpu-demo is for trying the tool, not for ranking architectures")


def test_the_demo_says_so_when_attention_does_not_help(urls):
    spec = demo_spec(urls)
    add_finished(spec, [row("0", "mlstm", 0.30, 900.0), row("all", "mamba2", 0.10, 500.0)])
    text = "\n".join(findings(spec))
    assert "Attention shows no recall advantage in this run." in text
    assert "What the front shows: its one trial is a pure SSM (trial 0)." in text


def test_no_complete_trial_and_chance_of_other_profiles(urls):
    spec = demo_spec(urls)
    add_finished(spec, [{**row("0", "mlstm", 0.0, 0.0), "failed": True}])
    assert findings(spec) == ["No trial completed, so the front shows nothing yet."]
    from workers.profile import load_profile

    assert chance(load_profile("cpu-tiny")) == 1 / 32  # MQAR over 64 tokens: 32 values
    assert chance(load_profile("gpu-small")) is None  # several tasks: no single guess


def test_the_gpu_demo_is_a_valid_study_of_the_gpu_quick_profile():
    from search_spaces.cost import param_counts
    from workers.profile import load_profile

    spec = load_spec(DEMO.with_name("demo-gpu.yaml"))
    assert spec.profile == "gpu-quick" and spec.resources.gpus == 0.25 and spec.concurrency == 4
    assert spec.budget.trials >= 16 and spec.early_stopping.enabled
    profile = load_profile("gpu-quick")
    assert profile.params == spec.constraints.params.budget
    # every family of the space scales to the budget within its tolerance: no trial starts infeasible
    from search_spaces.scaling import scale

    space = spec.search_space()
    for ssm in space.dimensions["ssm"]:
        for ratio in ("0", "1:7", "all"):
            arch = scale(space.build({"attn_ratio": ratio, "placement": "even", "ssm": ssm}), profile.params)
            n = param_counts(arch).total
            assert abs(n / profile.params - 1) <= spec.constraints.params.tolerance, (ssm, ratio, n)


def test_the_gpu_demo_on_a_machine_without_a_gpu_is_one_sentence_and_nothing_written(tmp_path):
    import subprocess
    import sys

    home = tmp_path / "home"
    r = subprocess.run([sys.executable, "-m", "nas.cli", "demo", "--gpu"], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env={**__import__("os").environ, "NAS_HOME": str(home),
                                                       "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(DEMO.parents[2])})
    assert r.returncode == 2 and "nas demo --gpu needs a CUDA GPU" in r.stderr and "Traceback" not in r.stderr
    assert not home.exists()


def test_the_gpu_demo_says_what_its_profile_is_for(urls):
    spec = load_spec(DEMO.with_name("demo-gpu.yaml")).model_copy(update=urls)
    add_finished(spec, [row("0", "mamba2", 0.07, 900.0), row("all", "mamba2", 0.36, 500.0)])
    last = findings(spec)[-1]
    assert last.startswith("Profile gpu-quick is a first look: proxies of 10M parameters trained on 4M tokens")
    assert "docs/gpu-studies.md" in last and "CPU" not in last
