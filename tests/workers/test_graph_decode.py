"""The CUDA-graph decoder replays exactly the eager step path (runs only where there is a GPU)."""

import pytest
import torch
from test_models import IDS, MIXED

from workers.models import GraphDecoder, build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.parametrize("compiled", [None, "inductor"], ids=["eager-step", "compiled-step"])
@pytest.mark.parametrize("cfg", MIXED, ids=IDS)
def test_graph_decoding_matches_eager_decoding(cfg, compiled):
    torch.manual_seed(0)
    torch.backends.cudnn.allow_tf32 = False
    model = build_model(cfg).cuda().eval()
    prompt = torch.randint(0, cfg.vocab_size, (3, 11), device="cuda")
    eager_cache, graph_cache = model.init_cache(3, 30), model.init_cache(3, 30)
    first = model.prefill(prompt, eager_cache)[:, -1].argmax(-1)
    assert torch.equal(first, model.prefill(prompt, graph_cache)[:, -1].argmax(-1))
    decoder = GraphDecoder(model, graph_cache, first, compiled=compiled)
    token = first
    for _ in range(12):
        logits = model.step(token, eager_cache)
        token = logits.argmax(-1)
        decoder.advance(1)
        torch.testing.assert_close(decoder.logits, logits, rtol=1e-4, atol=1e-4)
        assert torch.equal(decoder.token, token)
