"""Regional compilation of a proxy (`compile: true` in a profile): each block compiled, one graph per kind of
block shared by every block of that kind and by the next model of that width, the eager blocks back for timing."""

from __future__ import annotations

import pytest
import torch
from profiles import MICRO

from search_spaces import ArchConfig
from workers.evaluate import evaluate
from workers.models import build_model, compile_blocks, uncompile_blocks

CFG = ArchConfig(pattern="M-M-M-*-", d_model=32, attention={"heads": 2}, mamba2={"head_dim": 16, "d_state": 8})


def loss_and_grads(model, idx):
    out = model(idx[:, :-1], idx[:, 1:])
    grads = torch.autograd.grad(out.loss, list(model.parameters()))
    return out.loss.detach(), grads


def test_compiled_blocks_train_as_the_eager_ones_and_share_their_graphs():
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = build_model(CFG)
    compiled = compile_blocks(build_model(CFG).requires_grad_(), backend="aot_eager")
    compiled.load_state_dict(eager.state_dict())
    idx = torch.randint(0, CFG.vocab_size, (2, 17))
    torch._dynamo.utils.counters.clear()
    loss, grads = loss_and_grads(compiled, idx)
    ref_loss, ref_grads = loss_and_grads(eager, idx)
    torch.testing.assert_close(loss, ref_loss)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r)
    # eight blocks of three kinds (Mamba-2, MLP, attention): three graphs, not eight
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 3
    # the next model of this width (a trial's next task) compiles nothing new
    again = compile_blocks(build_model(CFG), backend="aot_eager")
    loss_and_grads(again, idx)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 3
    # the eager blocks back: nothing is traced
    uncompile_blocks(again)
    loss_and_grads(again, torch.randint(0, CFG.vocab_size, (3, 9)))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 3


def test_a_profile_with_compile_trains_each_block_compiled(monkeypatch: pytest.MonkeyPatch):
    torch._dynamo.reset()
    seen = []

    def compile_for_the_test(model):
        seen.append(model)
        return compile_blocks(model, backend="aot_eager")  # Inductor's CPU compile is slow for a unit test

    monkeypatch.setattr("workers.evaluate.compile_blocks", compile_for_the_test)
    r = evaluate(CFG, {**MICRO, "compile": True})
    assert r.status == "ok", r.failure
    assert len(seen) == 1 + len(MICRO["synthetic"]["tasks"])  # the language model and one per task
    assert all(block._compiled_call_impl is not None for block in seen[-1].blocks)
    assert seen[0]._compiled_call_impl is None and all(b._compiled_call_impl is None for b in seen[0].blocks), \
        "prefill and decode are timed on the eager blocks"
    assert r.throughput and all(t.decode_tokens_per_s > 0 for t in r.throughput)


def test_the_compiled_decode_step_is_the_eager_step(backend: str = "inductor"):
    """`HybridLM.step(..., compiled="inductor")`: every family's step compiled (the caches advanced in place
    inside the graph) decodes what the eager step decodes, one graph per kind of block. Inductor itself, not
    a tracing backend: its fusions of the step's in-place cache updates are what is under test."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    cfg = ArchConfig(pattern="M-*-X-D-m-M-", d_model=32, attention={"heads": 2},
                     mamba2={"head_dim": 16, "d_state": 8}, mlstm={"heads": 2}, deltanet={"heads": 2})
    model = build_model(cfg).eval()
    prompt = torch.randint(0, cfg.vocab_size, (2, 9))
    caches = [model.init_cache(2, 16) for _ in range(2)]
    for cache in caches:
        model.prefill(prompt, cache)
    token = torch.randint(0, cfg.vocab_size, (2,))
    torch._dynamo.utils.counters.clear()
    for _ in range(3):
        ref = model.step(token, caches[0])
        out = model.step(token, caches[1], compiled=backend)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        token = ref.argmax(-1)
    for state, ref_state in zip(caches[1], caches[0]):
        for name, value in (vars(ref_state) if ref_state is not None else {}).items():
            torch.testing.assert_close(getattr(state, name), value, rtol=1e-4, atol=1e-5)
    kinds = {(b.family) for b in model.blocks}
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == len(kinds)
