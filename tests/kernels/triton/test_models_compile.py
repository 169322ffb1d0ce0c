"""Every family's proxy on the Triton kernels compiles whole: torch.compile(fullgraph=True) traces the model
with no graph break (the kernels are PyTorch operators with their autograd and shapes registered), and the
compiled loss and gradients are the eager ones."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from search_spaces import ArchConfig
from search_spaces.pattern import MIXER_SYMBOLS
from workers.models import build_model

PATTERNS = [f"{s}-{s}-" for s in MIXER_SYMBOLS] + ["M-*E", "D-D-D-*-"]  # every mixer, MoE, two hybrids


@pytest.mark.parametrize("pattern", PATTERNS)
def test_proxy_compiles_whole_on_the_triton_kernels(pattern: str, monkeypatch) -> None:
    monkeypatch.setenv("KERNELS_BACKEND", "triton")
    cfg = ArchConfig.compose(pattern, 64, vocab_size=64)
    model = build_model(cfg)
    idx = torch.randint(0, 64, (2, 21))

    def loss_and_grads(m):
        loss = m(idx[:, :-1], idx[:, 1:]).loss
        return loss, torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)

    eager_loss, eager_grads = loss_and_grads(model)
    torch._dynamo.reset()
    compiled_loss, compiled_grads = loss_and_grads(torch.compile(model, fullgraph=True, backend="aot_eager"))
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-6, atol=1e-6)
    for (name, _), a, b in zip(model.named_parameters(), eager_grads, compiled_grads, strict=True):
        if a is None:
            assert b is None, name
        else:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


def test_kernels_backend_names_a_backend(monkeypatch) -> None:
    from kernels.ssd import ssd

    monkeypatch.setenv("KERNELS_BACKEND", "cuda")
    x = torch.randn(1, 4, 2, 8)
    with pytest.raises(ValueError, match=r"KERNELS_BACKEND='cuda' is not a backend; use one of reference, triton"):
        ssd(x, torch.rand(1, 4, 2), -torch.rand(2), torch.randn(1, 4, 1, 8), torch.randn(1, 4, 1, 8))
