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
