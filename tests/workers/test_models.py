import random

import pytest
import torch
from archgen import random_arch

from search_spaces import ArchConfig
from search_spaces.cost import param_counts
from search_spaces.presets import PRESETS, preset
from workers.models import build_model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def active_params(model, cfg: ArchConfig) -> int:
    """Parameters a token touches: all but the experts its router did not pick."""
    total = model.num_params()
    for block in model.blocks:
        if block.family == "moe":
            per_expert = sum(p.numel() for p in block.sublayer.experts[0].parameters())
            total -= (cfg.moe.experts - cfg.moe.top_k) * per_expert
    return total


@pytest.mark.parametrize("seed", range(60))
def test_param_count_equals_the_built_model(seed):
    cfg = random_arch(random.Random(seed))
    model = build_model(cfg)
    pc = param_counts(cfg)
    assert model.num_params() == pc.total
    assert active_params(model, cfg) == pc.active


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_at_proxy_size_trains_on_cpu(name):
    torch.manual_seed(0)
    cfg = preset(name, 1e6, vocab_size=256)
    model = build_model(cfg)
    assert model.num_params() == param_counts(cfg).total
    idx = torch.randint(0, 256, (2, 33))
    out = model(idx[:, :-1], idx[:, 1:])
    assert out.logits.shape == (2, 32, 256)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if cfg.moe is not None:
        assert out.aux_loss > 0


MIXED = [
    ArchConfig(pattern="*-*-", d_model=64, attention={"heads": 4, "kv_heads": 2}),
    ArchConfig(pattern="*-", d_model=64, attention={"heads": 4, "pos": "nope"}),
    ArchConfig(pattern="M-M-", d_model=64, mamba2={"d_state": 16, "head_dim": 16, "n_groups": 2, "chunk_size": 8}),
    ArchConfig(pattern="M-M-", d_model=64, mamba2={"d_state": 16, "head_dim": 16, "n_groups": 2, "norm": "head"}),
    ArchConfig(pattern="M-*-", d_model=64, mamba2={"d_state": 16, "head_dim": 16, "norm": "none"}),
    ArchConfig(pattern="m-m-", d_model=64, mamba1={"d_state": 8}),
    ArchConfig(pattern="X-X-", d_model=64, mlstm={"heads": 2}),
    ArchConfig(
        pattern="M*EmXE-",
        d_model=64,
        attention={"heads": 4, "kv_heads": 1, "rope_fraction": 0.5},
        mamba2={"d_state": 16, "head_dim": 16, "chunk_size": 8},
        moe={"experts": 4, "top_k": 2, "shared_expert": True},
    ),
    ArchConfig(pattern="D-D-", d_model=64, deltanet={"heads": 2, "chunk_size": 8}),
    ArchConfig(pattern="D-D-", d_model=64,
               deltanet={"heads": 2, "v_heads": 4, "head_dim": 16, "v_head_dim": 24, "gate": "channel"}),
    ArchConfig(pattern="C-C-", d_model=64),
    # local and global attention; the window is shorter than the sequences, so the rings wrap
    ArchConfig(pattern="WW*-", d_model=64, local_attention={"heads": 4, "kv_heads": 2, "window": 5, "qk_norm": True},
               attention={"heads": 4, "output_gate": True, "rope_fraction": 0.5}),
    ArchConfig(pattern="DCW*E", d_model=64, deltanet={"heads": 2, "gate": "channel"},
               local_attention={"heads": 4, "window": 3, "pos": "nope"},
               attention={"heads": 4, "kv_heads": 1, "window": 8, "output_gate": True, "qk_norm": True},
               moe={"experts": 4, "top_k": 2}),
]
IDS = ["attention", "attention-nope", "mamba2", "mamba2-head-norm", "mamba2-no-norm",
       "mamba1", "mlstm", "mixed-moe", "deltanet", "kda-gva",
       "shortconv", "local-global", "mixed-new"]


@pytest.mark.parametrize("cfg", MIXED, ids=IDS)
def test_step_decoding_reproduces_the_parallel_logits(cfg):
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    _perturb(model)
    idx = torch.randint(0, cfg.vocab_size, (2, 21))
    with torch.no_grad():
        full = model(idx).logits
    cache = model.init_cache(2, idx.shape[1])
    stepped = torch.stack([model.step(idx[:, t], cache) for t in range(idx.shape[1])], dim=1)
    assert rel_err(stepped, full) < 1e-4


@pytest.mark.parametrize("cfg", MIXED, ids=IDS)
def test_prefill_then_step_and_split_prefill(cfg):
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    _perturb(model)
    idx = torch.randint(0, cfg.vocab_size, (2, 19))
    with torch.no_grad():
        full = model(idx).logits
    cache = model.init_cache(2, 19)
    first = model.prefill(idx[:, :7], cache)
    second = model.prefill(idx[:, 7:13], cache)
    rest = torch.stack([model.step(idx[:, t], cache) for t in range(13, 19)], dim=1)
    assert rel_err(torch.cat([first, second, rest], dim=1), full) < 1e-4


@pytest.mark.parametrize("cfg", MIXED, ids=IDS)
def test_causal(cfg):
    torch.manual_seed(2)
    model = build_model(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (1, 16))
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % cfg.vocab_size
    with torch.no_grad():
        a, b = model(idx).logits, model(changed).logits
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_a_window_sees_only_its_latest_tokens_and_caches_no_more():
    torch.manual_seed(6)
    cfg = ArchConfig(pattern="W", d_model=32, local_attention={"heads": 2, "window": 4})
    model = build_model(cfg).eval()
    idx = torch.randint(0, 256, (1, 12))
    changed = idx.clone()
    changed[0, 3] = (idx[0, 3] + 1) % 256
    with torch.no_grad():
        a, b = model(idx).logits, model(changed).logits
    assert not torch.allclose(a[:, 3:7], b[:, 3:7])  # positions 3..6 see token 3
    torch.testing.assert_close(a[:, 7:], b[:, 7:])  # from 7 on it is out of the window
    cache = model.init_cache(1, 4096)
    assert cache[0].k.shape[2] == 4


def test_rope_and_nope_differ_only_in_position_handling():
    torch.manual_seed(3)
    rope = build_model(ArchConfig(pattern="*", d_model=32, attention={"heads": 2}))
    nope = build_model(ArchConfig(pattern="*", d_model=32, attention={"heads": 2, "pos": "nope"}))
    nope.load_state_dict(rope.state_dict())
    idx = torch.randint(0, 256, (1, 8))
    with torch.no_grad():
        assert not torch.allclose(rope(idx).logits, nope(idx).logits)
        # with one token there is no position to encode
        torch.testing.assert_close(rope(idx[:, :1]).logits, nope(idx[:, :1]).logits)


def test_rope_rotates_pairs_by_position_times_frequency():
    """RoPE as complex multiplication in fp64: channel i and i + r/2 of position p turn by p·θ^(−2i/r), from a
    start held on the device (as a decode step passes it); the table is an operator of its own."""
    from workers.models.attention import rope, rope_table

    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 16)
    for rotary in (16, 8):  # whole and partial (the rest passes through)
        got = rope(x, torch.tensor([7]), 500.0, rotary)
        half = rotary // 2
        angle = torch.arange(7, 12, dtype=torch.float64)[:, None] * 500.0 ** (-torch.arange(half) * 2 / rotary)
        z = torch.complex(x[..., :half].double(), x[..., half:rotary].double()) * torch.polar(
            torch.ones_like(angle), angle)[None, :, None, :]
        torch.testing.assert_close(got, torch.cat([z.real, z.imag, x[..., rotary:].double()], -1).float())
    torch.library.opcheck(rope_table, (torch.arange(9), 10000.0, 64))
    graphs = []  # compiled, the table is the operator (Inductor cannot fuse it into the rotation)

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(rope, backend=record, fullgraph=True)(x, 7, 500.0, 16),
                               rope(x, 7, 500.0, 16))
    assert any("rope_table" in str(node.target) for gm in graphs for node in gm.graph.nodes)


def test_mamba2_pads_its_projection_rows_without_changing_a_number():
    """The in_proj output runs 16-aligned (rows the conv kernels can read in vectors); the weight keeps Mamba's
    shape, and every piece of the split equals the unpadded projection's."""
    import torch.nn.functional as F

    from workers.models.mamba2 import Mamba2

    torch.manual_seed(0)
    cfg = ArchConfig(pattern="M", d_model=48, mamba2={"head_dim": 16, "d_state": 8})
    mixer = build_model(cfg).blocks[0].sublayer
    assert isinstance(mixer, Mamba2) and mixer.in_proj.out_features % 16 != 0
    assert mixer.in_proj.weight.shape == (2 * 96 + 2 * 8 + 6, 48)
    u = torch.randn(2, 5, 48)
    z, x, B, C, dt, _ = mixer._split(u, None)
    assert z.stride(1) % 16 == 0
    assert mixer._project(u[:, :1]).shape[-1] == mixer.in_proj.out_features  # a decode step's one token is not
    gn = mixer.n_groups * mixer.d_state
    z0, xbc0, dt0 = F.linear(u, mixer.in_proj.weight).split([96, 96 + 2 * gn, 6], dim=-1)
    xbc0, _ = mixer.conv(xbc0)
    for got, want in zip((z, torch.cat([x, B, C], -1), dt),
                         (z0, xbc0, F.softplus(dt0 + mixer.dt_bias)), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("norm", ["group", "head", "none"])
def test_mamba2_norms_y_times_silu_z_over_its_groups_its_heads_or_not_at_all(norm):
    from search_spaces import Mamba2Options
    from workers.models.mamba2 import Mamba2

    layer = Mamba2(64, Mamba2Options(d_state=8, head_dim=16, n_groups=2, norm=norm))  # 8 heads in 2 groups
    y, z = torch.randn(3, 128), torch.randn(3, 128)
    out, gated = layer._gate(y, z), y * torch.nn.functional.silu(z)
    if norm == "none":
        assert layer.norm is None and torch.equal(out, gated)
        return
    slices = {"group": 2, "head": 8}[norm]
    g = gated.unflatten(-1, (slices, -1))
    expected = (g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + 1e-5)).flatten(-2)  # unit RMS in each slice
    assert torch.allclose(out, expected, atol=1e-6)
    other = gated.unflatten(-1, ({"group": 8, "head": 2}[norm], -1))  # the other option's slices: not this one's
    assert not torch.allclose(out, (other * torch.rsqrt(other.pow(2).mean(-1, keepdim=True) + 1e-5)).flatten(-2))


def test_moe_routes_every_token_and_balances():
    torch.manual_seed(4)
    cfg = ArchConfig(pattern="E", d_model=32, moe={"experts": 4, "top_k": 2})
    model = build_model(cfg)
    moe = model.blocks[0].sublayer
    x = torch.randn(3, 50, 32)
    y = moe(x)
    # no dropped tokens: equal to running each token through its two experts by hand
    probs = torch.softmax(moe.router(x), -1)
    w, e = probs.topk(2, -1)
    w = w / w.sum(-1, keepdim=True)
    ref = sum(
        torch.stack([moe.experts[int(e[b, t, j])](x[b, t]) for b in range(3) for t in range(50)]).view(3, 50, 32)
        * w[..., j : j + 1]
        for j in range(2)
    )
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    # Switch loss is E·Σ f·P: 1 when routing is uniform, larger when skewed
    assert 0.9 < moe.aux_loss.item() < 1.5
    with torch.no_grad():
        moe.router.weight.zero_()
        moe.router.weight[0] = 1.0
    moe(x.abs())  # every token's top choice is expert 0
    assert moe.aux_loss.item() > 1.9
    # the LM adds the weighted aux loss to the cross-entropy it returns
    idx, tgt = torch.randint(0, 256, (2, 8)), torch.randint(0, 256, (2, 8))
    out = model(idx, tgt)
    ce = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), tgt.flatten())
    torch.testing.assert_close(out.loss, ce + cfg.moe.aux_loss_weight * out.aux_loss)


@pytest.mark.parametrize("activation", ["swiglu", "relu2", "gelu"])
def test_moe_batched_experts_equal_one_expert_at_a_time(activation, monkeypatch):
    """The padded [E, capacity, d] batch and the per-expert loop: same output, same gradients."""
    torch.manual_seed(5)
    cfg = ArchConfig(pattern="E", d_model=32, moe={"experts": 8, "top_k": 2, "activation": activation})
    moe = build_model(cfg).blocks[0].sublayer
    x = torch.randn(120, 32, requires_grad=True)

    def route():
        w, chosen = torch.softmax(moe.router(x), -1).topk(2, -1)
        return chosen, w / w.sum(-1, keepdim=True)

    def run(fn):
        moe.zero_grad()
        x.grad = None
        y = fn(x, *route())
        y.square().sum().backward()
        return y.detach(), x.grad.clone(), {n: p.grad.clone() for n, p in moe.named_parameters()}

    def refuse(*args):
        raise AssertionError("a balanced load should run as one batch")

    each = run(moe._routed_each)
    monkeypatch.setattr(moe, "_routed_each", refuse)
    batched = run(moe._routed)
    torch.testing.assert_close(batched[0], each[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batched[1], each[1], rtol=1e-5, atol=1e-6)
    for name, g in each[2].items():
        torch.testing.assert_close(batched[2][name], g, rtol=1e-5, atol=1e-6, msg=name)
    monkeypatch.undo()
    chosen, w = route()
    skewed = torch.zeros_like(chosen)  # every slot on expert 0 and 1: the padding would be 4x the work
    skewed[:, 1] = 1
    torch.testing.assert_close(moe._routed(x, skewed, w), moe._routed_each(x, skewed, w))


def _perturb(model):
    """Move parameters off their structured init so decode checks exercise every path (gates, D, biases)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
