import itertools
import math

import pytest
import torch

from search_spaces import ArchConfig
from workers.models import build_model
from workers.profile import Optim
from workers.train import TrialFailed, _lr, train

CPU = torch.device("cpu")
CFG = ArchConfig(pattern="M*-", d_model=32, attention={"heads": 2}, mamba2={"head_dim": 16, "d_state": 8})


def copy_task(n, g):
    """Next token = this token + 1 (mod 50), scored on the second half: learnable in a few dozen steps."""
    x = torch.randint(0, 50, (n, 16), generator=g)
    y = (x + 1) % 50
    y[:, :8] = -100
    return x, y


def run(model, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    args = dict(task="copy", tokens=60 * 16 * 16, batch_size=16, seq_len=16, optim=Optim(lr=1e-2, weight_decay=0.0),
                device=CPU, progress_every=5)
    args.update(kw)
    return train(model, lambda n: copy_task(n, g), **args)


def test_budget_in_tokens_and_learning():
    torch.manual_seed(0)
    reports = []
    stats = run(build_model(CFG), progress=reports.append)
    assert stats.steps == 60 and stats.tokens == 60 * 16 * 16
    assert [r.step for r in reports] == list(range(5, 61, 5))
    assert reports[-1].loss < reports[0].loss * 0.7
    assert all(r.tokens_per_s > 0 and r.task == "copy" for r in reports)
    assert stats.curve[-1] == (60, 60 * 256, reports[-1].loss)


def test_deterministic_given_the_seed():
    torch.manual_seed(0)
    a = run(build_model(CFG), tokens=10 * 256)
    torch.manual_seed(0)
    b = run(build_model(CFG), tokens=10 * 256)
    assert a.curve == b.curve


def test_micro_batches_accumulate_to_the_same_step():
    torch.manual_seed(0)
    m1 = build_model(CFG)
    m2 = build_model(CFG)
    m2.load_state_dict(m1.state_dict())
    run(m1, tokens=256)
    run(m2, tokens=256, micro_batch_size=4)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-3, atol=1e-5)


def test_warmup_then_cosine():
    o = Optim(lr=1.0, min_lr_ratio=0.1, warmup_fraction=0.1)
    lrs = [_lr(s, 100, o) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[-1] == pytest.approx(0.1, abs=0.01)


def test_divergence_fails_with_the_step():
    torch.manual_seed(0)
    model = build_model(CFG)

    def poison(module, inputs, output):
        poison.calls += 1
        if poison.calls > 7:
            return output._replace(loss=output.loss * math.nan)
        return None

    poison.calls = 0
    model.register_forward_hook(poison)
    with pytest.raises(TrialFailed) as e:
        run(model, tokens=20 * 256)
    assert e.value.kind == "diverged" and e.value.step == 7
    assert "step 7 of 20" in e.value.reason and "learning rate" in e.value.reason


class OOMAbove:
    """Raises CUDA's out-of-memory error for micro-batches larger than `limit` sequences."""

    def __init__(self, model, limit):
        self.seen = []
        model.register_forward_pre_hook(self)
        self.limit = limit

    def __call__(self, module, args):
        n = args[0].shape[0]
        self.seen.append(n)
        if n > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_halves_the_micro_batch_and_keeps_the_batch():
    torch.manual_seed(0)
    ref = build_model(CFG)
    model = build_model(CFG)
    model.load_state_dict(ref.state_dict())
    run(ref, tokens=2 * 256)
    hook = OOMAbove(model, limit=4)
    stats = run(model, tokens=2 * 256)
    assert stats.micro_batch_size == 4
    assert hook.seen[:3] == [16, 8, 4]  # 16 and 8 fail, then 4 × 4 per step
    for p1, p2 in zip(ref.parameters(), model.parameters()):
        torch.testing.assert_close(p1, p2, rtol=1e-3, atol=1e-5)


def test_out_of_memory_at_the_floor_fails_with_the_reason():
    torch.manual_seed(0)
    model = build_model(CFG)
    OOMAbove(model, limit=1)
    with pytest.raises(TrialFailed) as e:
        run(model, tokens=256, min_micro_batch_size=4)
    assert e.value.kind == "oom" and "micro-batch of 4" in e.value.reason and e.value.step == 0
