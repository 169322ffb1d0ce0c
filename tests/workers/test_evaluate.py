import copy
import json

import pytest
import torch
from profiles import MICRO

from search_spaces import ArchConfig, ConfigError
from search_spaces.cost import cache_bytes, param_counts
from workers.evaluate import evaluate
from workers.profile import load_profile, profile_names
from workers.result import TrialResult, metric_direction, parts_for

CFG = ArchConfig(
    pattern="M-*E",
    d_model=32,
    attention={"heads": 2},
    mamba2={"head_dim": 16, "d_state": 8},
    moe={"experts": 2, "top_k": 1},
)


def test_a_trial_measures_quality_throughput_and_memory():
    reports = []
    r = evaluate(CFG, MICRO, progress=reports.append)
    assert r.status == "ok" and r.failure is None
    assert {p.task for p in reports} == {"lm", "mqar", "in_context_recall"}
    assert r.params == param_counts(CFG).total and r.active_params == param_counts(CFG).active
    assert (
        r.lm.steps == 4 and r.lm.val_loss > 0 and r.lm.bits_per_byte == pytest.approx(r.lm.val_loss / 0.6931, rel=1e-3)
    )
    assert set(r.tasks) == {"mqar", "in_context_recall"}
    assert all(0 <= t.accuracy <= 1 and t.steps in (3, 4) for t in r.tasks.values())  # recall reads seq_len - 1
    assert r.synthetic_accuracy == pytest.approx(sum(t.accuracy for t in r.tasks.values()) / 2)
    assert [t.context for t in r.throughput] == [16, 48]
    assert all(t.prefill_tokens_per_s > 0 and t.decode_tokens_per_s > 0 for t in r.throughput)
    assert r.throughput[1].kv_state_bytes == cache_bytes(CFG, 48).total
    assert r.peak_memory_bytes > 0 and r.memory_kind == "cpu_rss"
    assert r.corpus["name"] == "stdlib" and len(r.corpus["sha256"]) == 64
    assert r.versions["torch"] and r.seeds == {"model": 0, "data": 0}
    # JSON-serialisable, and back
    again = TrialResult.model_validate(json.loads(r.model_dump_json()))
    assert again == r
    m = r.metrics()
    for name in (
        "lm_loss",
        "bpb",
        "synthetic_accuracy",
        "acc.mqar",
        "train_tps",
        "decode_tps",
        "decode_tps.48",
        "prefill_tps.16",
        "kv_state_bytes",
        "params",
        "active_params",
        "peak_memory",
        "wall_seconds",
    ):
        assert name in m, name
        metric_direction(name)
    assert m["decode_tps"] == m["decode_tps.48"]


def test_the_same_seed_gives_the_same_quality():
    a, b = evaluate(CFG, MICRO, seed=3), evaluate(CFG, MICRO, seed=3)
    assert a.lm.val_loss == b.lm.val_loss and a.tasks["mqar"].accuracy == b.tasks["mqar"].accuracy
    assert evaluate(CFG, MICRO, seed=4).lm.val_loss != a.lm.val_loss


def test_budget_scales_every_token_budget():
    r = evaluate(CFG, MICRO, budget=0.5)
    assert r.lm.steps == 2 and r.tasks["mqar"].steps == 2 and r.budget == 0.5


def test_a_diverging_trial_ends_as_failed_with_reason_and_step():
    prof = copy.deepcopy(MICRO)
    prof["lm"]["optim"] = {"lr": 1e6, "grad_clip": 1e9}
    prof["lm"]["tokens"] = 30 * 4 * 32
    prof["progress_every"] = 30
    r = evaluate(CFG, prof)
    assert r.status == "failed" and r.failure.kind == "diverged" and r.failure.task == "lm"
    assert r.failure.step is not None and "learning rate" in r.failure.reason
    assert r.lm is None and r.params > 0


def test_running_out_of_memory_outside_training_ends_as_failed_with_the_fix(monkeypatch):
    import workers.evaluate as ev

    def no_memory(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")

    monkeypatch.setattr(ev, "throughput", no_memory)  # after training: the trial's memory is its own to give back
    r = evaluate(CFG, MICRO)
    assert r.status == "failed" and r.failure.kind == "oom" and r.lm is not None and not r.tasks
    assert "out of memory building, evaluating or timing" in r.failure.reason and "resources.gpus" in r.failure.reason


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"lm": {"corpus": "/nonexistent/*.txt"}}, ["neither a directory"]),
        ({"synthetic": {"tasks": [{"name": "mqar2"}]}}, ["unknown synthetic task 'mqar2'"]),
        ({"synthetic": {"tasks": [{"name": "mqar", "settings": {"vocab_size": 512}}]}}, ["vocab_size=256", "512"]),
        ({"lm": {"batch_size": 6, "micro_batch_size": 4}}, ["micro_batch_size=4 does not divide batch_size=6"]),
        ({"lm": {"seq_length": 3}}, ["unknown key", "lm.seq_length"]),
    ],
)
def test_bad_profile_or_data_fails_before_training(change, words):
    prof = copy.deepcopy(MICRO)
    for k, v in change.items():
        prof[k] = {**prof[k], **v}
    with pytest.raises(ConfigError) as e:
        evaluate(CFG, prof, progress=lambda p: pytest.fail("trained before checking its inputs"))
    for w in words:
        assert w in str(e.value)


def test_profiles_are_data():
    assert {"cpu-tiny", "cpu-demo", "gpu-small", "gpu-medium"} <= set(profile_names())
    for name in profile_names():
        p = load_profile(name)
        assert p.name == name and p.throughput.contexts
    with pytest.raises(ConfigError, match="unknown profile 'cpu-huge'; choose one of cpu-demo, cpu-tiny"):
        load_profile("cpu-huge")


def test_the_mean_and_spread_of_several_seeds():
    from workers.result import LMScore, mean_metrics, spread_metrics

    def result(loss: float, params: int = 1000) -> TrialResult:
        lm = LMScore(val_loss=loss, bits_per_byte=None, tokens=10, steps=1, seconds=1.0, train_tokens_per_s=10.0)
        return TrialResult(status="ok", arch={}, pattern="M-", profile="micro", device="cpu", params=params,
                           active_params=params, lm=lm, wall_seconds=1.0)

    runs = [result(1.0), result(2.0), result(3.0)]
    assert mean_metrics(runs)["lm_loss"] == pytest.approx(2.0)
    sd = spread_metrics(runs)
    assert sd["lm_loss"] == pytest.approx(1.0) and sd["params"] == 0.0  # the sample standard deviation
    assert spread_metrics(runs[:1]) == {}


def test_the_parts_an_objective_reads():
    from workers.result import _PART, METRICS

    assert set(_PART) == set(METRICS)  # every metric says which part of an evaluation produces it
    tasks = ["mqar", "in_context_recall"]
    assert parts_for(["synthetic_accuracy", "decode_tps"], tasks) == ("in_context_recall", "mqar", "throughput")
    assert parts_for(["acc.mqar", "kv_state_bytes.2048"], tasks) == ("mqar", "throughput")
    assert parts_for(["lm_loss", "params"], tasks) == ("lm",)
    assert parts_for(["bpb", "train_tps"], tasks) == ("lm",)
    assert parts_for(["params", "active_params"], tasks) == ()
    assert parts_for(["lm_loss", "peak_memory"], tasks) is None  # the whole evaluation's peak
    assert parts_for(["wall_seconds"], tasks) is None


def test_a_lower_rung_runs_only_the_parts_its_objectives_read():
    reports = []
    r = evaluate(CFG, MICRO, parts=("mqar", "throughput"), progress=reports.append)
    assert r.status == "ok" and {p.task for p in reports} == {"mqar"}  # no LM run, one task
    assert r.lm is None and set(r.tasks) == {"mqar"} and r.synthetic_accuracy is None
    assert [t.context for t in r.throughput] == [16, 48] and all(t.decode_tokens_per_s > 0 for t in r.throughput)
    full = evaluate(CFG, MICRO)
    assert r.tasks["mqar"] == full.tasks["mqar"].model_copy(update={"seconds": r.tasks["mqar"].seconds})
    assert r.tokens == full.tasks["mqar"].tokens
    m = r.metrics()
    assert "acc.mqar" in m and "decode_tps" in m and "lm_loss" not in m and "synthetic_accuracy" not in m
    lm_only = evaluate(CFG, MICRO, parts=("lm",))
    assert lm_only.lm is not None and not lm_only.tasks and not lm_only.throughput


def test_speed_is_timed_alone_after_a_shared_warm_up_at_each_context(monkeypatch):
    """The first run at a new length compiles kernels for its shapes: not timed, and not with the device
    held alone (the host's other trials would wait through the compile)."""
    import contextlib

    from workers import score
    from workers.models import build_model

    runs, alone = [], [False]

    @contextlib.contextmanager
    def held():
        alone[0] = True
        yield
        alone[0] = False

    real = score._prefill_and_decode

    def spy(model, vocab, batch, T, *rest):
        runs.append((T, alone[0]))
        return real(model, vocab, batch, T, *rest)

    monkeypatch.setattr(score.turns, "alone", held)
    monkeypatch.setattr(score, "_prefill_and_decode", spy)
    rows = score.throughput(build_model(CFG), [48, 16], 2, 2, 2, torch.device("cpu"))
    assert [r.context for r in rows] == [16, 48]
    assert runs == [(16, False), (16, True), (16, True), (48, False), (48, True), (48, True)]
