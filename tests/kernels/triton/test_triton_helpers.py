"""The helpers shared by the Triton kernels: tuned blocks fitted to small dimensions, bf16 rounding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

from kernels._triton import fit_blocks, round_bf16, tiles  # noqa: E402


def test_fit_blocks_cuts_blocks_to_the_dimension_and_drops_duplicates() -> None:
    configs = tiles(("BN", "BP"), [(64, 64), (32, 64), (32, 32)], (4, 2), (4, 3))
    small = fit_blocks(configs, {"N": 8, "P": 20}, {"BN": "N", "BP": "P"})
    assert [(c.kwargs["BN"], c.kwargs["BP"], c.num_warps, c.num_stages) for c in small] == [
        (16, 32, 4, 2), (16, 32, 4, 3)
    ]
    large = fit_blocks(configs, {"N": 128, "P": 64}, {"BN": "N", "BP": "P"})
    assert [(c.kwargs, c.num_warps, c.num_stages) for c in large] == [
        (c.kwargs, c.num_warps, c.num_stages) for c in configs
    ]



def test_a_register_cap_survives_fitting_and_held_warps() -> None:
    from kernels._triton import _with_warps, warps

    configs = tiles(("BN",), [(64,), (32,)], (4, 2), (8, 2, 128))
    assert [(c.kwargs["BN"], c.num_warps, c.maxnreg) for c in configs] == [
        (64, 4, None), (64, 8, 128), (32, 4, None), (32, 8, 128)
    ]
    fitted = fit_blocks(configs, {"N": 16}, {"BN": "N"})  # both sizes cut to 16: a capped and an uncapped one
    assert [(c.kwargs["BN"], c.num_warps, c.maxnreg) for c in fitted] == [(16, 4, None), (16, 8, 128)]
    held = _with_warps(warps((4, 2), (8, 2, 128)), 2)  # KERNELS_WARPS=2: the cap is a config of its own still
    assert [(c.num_warps, c.maxnreg) for c in held] == [(2, None), (2, 128)]

@triton.jit
def _round_kernel(x_ptr, y_ptr, N: tl.constexpr):
    i = tl.arange(0, N)
    tl.store(y_ptr + i, round_bf16(tl.load(x_ptr + i)))


def test_round_bf16_rounds_to_nearest_even_as_the_gpu_does() -> None:
    x = torch.tensor([1 + 2**-9 + 2**-12, 1 + 3 * 2**-9, 1 + 2**-9, 1 / 3, -0.1, 3e38, 1e-40, 0.0] * 2)
    y = torch.empty_like(x)
    _round_kernel[(1,)](x, y, N=16)
    assert torch.equal(y, x.bfloat16().float())


def test_the_warp_counts_a_kernel_avoids_on_a_miscompiling_triton():
    from kernels._triton import DOT_BF16, DOT_FP32, _avoiding, warps

    configs = warps((4, 2), (4, 3), (8, 2))
    assert [c.num_warps for c in _avoiding(configs, DOT_FP32, {DOT_FP32: (8,)})] == [4, 4]
    assert [c.num_warps for c in _avoiding(configs, DOT_BF16, {DOT_FP32: (8,)})] == [4, 4, 8]  # other modes keep all
    held = _avoiding(configs, DOT_BF16, {DOT_BF16: (4, 8)})  # nothing left: every config at 2 warps, once each
    assert [(c.num_warps, c.num_stages) for c in held] == [(2, 2), (2, 3)]


def test_ampere_mma_sets_disable_mma_v3_around_bf16_launches_on_a_miscompiling_triton_only(monkeypatch):
    """Triton reads DISABLE_MMA_V3 when it compiles: the context sets it for bf16 products on Hopper under Triton
    3.4-3.7.0 and puts back what was there; elsewhere, in fp32 and with KERNELS_AMPERE_MMA=0 it leaves it alone."""
    import os

    import kernels._triton as kt
    from kernels.mlstm import triton as mlstm_triton

    def inside(mode: int) -> str | None:
        with kt.ampere_mma(mode):
            return os.environ.get("DISABLE_MMA_V3")

    monkeypatch.delenv("DISABLE_MMA_V3", raising=False)
    assert inside(kt.DOT_BF16) is None  # the interpreter: no Hopper, nothing to do
    monkeypatch.setattr(kt, "_miscompiling_triton", lambda: True)
    assert inside(kt.DOT_BF16) == "1" and "DISABLE_MMA_V3" not in os.environ
    assert inside(kt.DOT_FP32) is None  # fp32's tf32x3 products keep Hopper's MMA and their own `avoid`
    monkeypatch.setenv("DISABLE_MMA_V3", "0")
    assert inside(kt.DOT_BF16) == "1" and os.environ["DISABLE_MMA_V3"] == "0"
    with pytest.raises(RuntimeError), kt.ampere_mma(kt.DOT_BF16):
        raise RuntimeError("a launch that fails")
    assert os.environ["DISABLE_MMA_V3"] == "0"
    monkeypatch.setattr(kt, "AMPERE_MMA", False)  # KERNELS_AMPERE_MMA=0
    assert inside(kt.DOT_BF16) == "0"
    # the mLSTM avoids no warp count when its products compile to Ampere's MMA, and 4 and 8 in bf16 when not
    assert ({} if mlstm_triton.AMPERE_MMA else {kt.DOT_BF16: (4, 8)}) == mlstm_triton.AVOID


def test_the_state_kernels_compile_at_k256_only_the_configs_that_fit_a_hopper_sm():
    """At K = 256 the state kernels' wide configs need more shared memory than an SM has, and Triton would
    compile each before finding out. `state_fits` agrees with every config compiled for sm_90a in the log
    (shared bytes ≤ 232,448), and below K = 256 keeps every config."""
    import triton

    from kernels._triton import DOT_BF16, DOT_FP32, prune_configs
    from kernels.delta.triton import STATE_TILES, state_fits

    log = Path(__file__).parents[3] / "docs/benchmarks/logs/delta-registers-k256-stages-2026-12-02.md"
    rows = [[x.strip() for x in line.strip("|\n").split("|")] for line in log.read_text().splitlines()
            if line.startswith("| delta_")]
    assert len(rows) == 72
    for name, _, mode, _, bv, warps, stages, _, _, shared, _ in rows:
        cfg = triton.Config({"BV": int(bv)}, num_warps=int(warps), num_stages=int(stages))
        meta = {"BKF": 256, "MODE": DOT_FP32 if mode == "fp32" else DOT_BF16}
        assert state_fits("fwd" in name)(cfg, meta) == (int(shared.replace(",", "")) <= 232_448), (name, mode, cfg)

    def kept(forward: bool, K: int, mode: int) -> set[tuple[int, int, int]]:
        cfgs = prune_configs(STATE_TILES, {"V": 64}, {"BKF": K, "MODE": mode}, fit={"BV": "V"},
                             fits=state_fits(forward))
        return {(c.kwargs["BV"], c.num_warps, c.num_stages) for c in cfgs}

    every = {(c.kwargs["BV"], c.num_warps, c.num_stages) for c in STATE_TILES}
    for forward in (True, False):
        assert kept(forward, 128, DOT_FP32) == kept(forward, 128, DOT_BF16) == every
    assert kept(False, 256, DOT_FP32) == {(16, 4, 1), (32, 4, 1)}
    assert len(kept(True, 256, DOT_BF16)) < len(every)


def _ssd(t: dict) -> tuple:
    from kernels.ssd import ssd

    return ssd(**t, return_final_state=True, chunk_size=16, backend="triton")


def _mlstm(t: dict) -> tuple:
    from kernels.mlstm import mlstm

    state = tuple(t[n] for n in ("C0", "n0", "m0"))
    args = {n: x for n, x in t.items() if n not in ("C0", "n0", "m0")}
    out, (C, n, m) = mlstm(**args, initial_state=state, return_final_state=True, chunk_size=16, backend="triton")
    return out, C, n, m


def _selective_scan(t: dict) -> tuple:
    from kernels.selective_scan import selective_scan

    return selective_scan(**t, return_final_state=True, backend="triton")


def _delta(t: dict) -> tuple:
    from kernels.delta import gated_delta

    return gated_delta(**t, return_final_state=True, chunk_size=16, backend="triton")


def _delta_fused(t: dict) -> tuple:
    """The wy kernel in one (`KERNELS_DELTA_WY=fused`), the inverse by blocks through memory."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KERNELS_DELTA_WY", "fused")
        env.setenv("KERNELS_DELTA_INVERSE", "blocks")
        return _delta(t)


RELAUNCH_CASES = {  # op: (run, inputs), each over two chunks or blocks and with every optional input
    "ssd": (_ssd, lambda: __import__("kernel_inputs").ssd_inputs(1, 37, 2, 12, 10, 2, "D-z-state")),
    "mlstm": (_mlstm, lambda: __import__("kernel_inputs").mlstm_inputs(1, 37, 2, 12, 10, "state")),
    "selective_scan": (
        _selective_scan, lambda: __import__("kernel_inputs").selective_scan_inputs(1, 37, 20, 6, None, "D-z-state")
    ),
    "delta": (_delta, lambda: __import__("kernel_inputs").delta_inputs(1, 37, 2, 12, 10, "state")),
    "delta-channel": (_delta, lambda: __import__("kernel_inputs").delta_inputs(1, 37, 2, 12, 10, "channel-state")),
    "delta-fused": (_delta_fused, lambda: __import__("kernel_inputs").delta_inputs(1, 37, 2, 12, 10, "state")),
}


@pytest.mark.parametrize("op", list(RELAUNCH_CASES))
def test_every_tuned_kernel_gives_the_same_result_when_run_again(op: str, monkeypatch) -> None:
    """Autotuning runs a kernel many times on the same buffers before it keeps a config, so a tuned kernel
    must not read what it writes. Every tuned kernel launched twice (`KERNELS_RELAUNCH=1`) must give the
    outputs and gradients of one launch, bit for bit."""
    run, make = RELAUNCH_CASES[op]

    def outputs_and_grads(relaunch: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        inputs = make()
        monkeypatch.setenv("KERNELS_RELAUNCH", "1" if relaunch else "0")
        outs = run(inputs)
        torch.manual_seed(1)
        sum((o.float() * torch.randn_like(o.float())).sum() for o in outs).backward()
        return [o.detach() for o in outs] + [t.grad for t in inputs.values()]

    once, twice = outputs_and_grads(False), outputs_and_grads(True)
    for a, b in zip(once, twice):
        assert torch.equal(a, b)


BACKWARDS = {  # op: (its triton module, the host function its backward operator calls)
    "ssd": ("kernels.ssd.triton", "ssd_bwd"),
    "mlstm": ("kernels.mlstm.triton", "mlstm_bwd"),
    "selective_scan": ("kernels.selective_scan.triton", "selective_scan_bwd"),
    "delta": ("kernels.delta.triton", "delta_bwd"),
}


@pytest.mark.parametrize("op", list(BACKWARDS))
def test_a_final_state_the_loss_does_not_use_reaches_the_backward_as_none(op: str, monkeypatch) -> None:
    """`keep_for_backward`: when only the output is used, the registered backward is handed None for the
    final state's cotangent (not zeros, so it skips that work) and no gradient for the saved state."""
    import importlib

    module_name, name = BACKWARDS[op]
    module = importlib.import_module(module_name)
    seen = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *args, **kw: seen.append(args[1]) or real(*args, **kw))
    run, make = RELAUNCH_CASES[op]
    inputs = make()
    out = run(inputs)[0]
    out.float().square().sum().backward()
    assert seen == [None]
    assert all(t.grad is not None for t in inputs.values())


def _eager_cases():
    """(module, call): each op's Triton path on small inputs that take gradients."""
    import torch.nn.functional as F

    from kernels.conv1d import causal_conv1d
    from kernels.delta import gated_delta
    from kernels.mlstm import mlstm
    from kernels.selective_scan import selective_scan
    from kernels.ssd import ssd

    torch.manual_seed(0)
    b, T, H, K = 1, 9, 2, 8

    def leaf(*shape, f=lambda x: x):
        return f(torch.randn(*shape)).requires_grad_()

    return {
        "ssd": lambda: ssd(leaf(b, T, H, K), leaf(b, T, H, f=F.softplus), leaf(H, f=lambda x: -x.exp()),
                           leaf(b, T, 1, 4), leaf(b, T, 1, 4), backend="triton"),
        "mlstm": lambda: mlstm(leaf(b, T, H, K), leaf(b, T, H, K), leaf(b, T, H, K), leaf(b, T, H),
                               leaf(b, T, H), backend="triton"),
        "selective_scan": lambda: selective_scan(leaf(b, T, 16), leaf(b, T, 16, f=F.softplus),
                                                 leaf(16, 4, f=lambda x: -x.exp()), leaf(b, T, 4), leaf(b, T, 4),
                                                 backend="triton"),
        "conv1d": lambda: causal_conv1d(leaf(b, T, 16), leaf(16, 4), leaf(16), backend="triton"),
        "delta": lambda: gated_delta(leaf(b, T, H, K, f=lambda x: F.normalize(x, dim=-1)),
                                     leaf(b, T, H, K, f=lambda x: F.normalize(x, dim=-1)), leaf(b, T, H, K),
                                     leaf(b, T, H, f=F.logsigmoid), leaf(b, T, H, f=torch.sigmoid),
                                     backend="triton"),
    }


@pytest.mark.parametrize("op", ["ssd", "mlstm", "selective_scan", "conv1d", "delta"])
def test_an_eager_call_runs_the_kernels_without_their_operators(op: str, monkeypatch) -> None:
    """Eager mode skips the dispatcher (`eager_autograd`): the output's autograd node is the Function's, and
    its backward calls the backward's function, never the operator, whose registrations torch.compile uses
    (each op's compile test)."""
    import importlib

    module = importlib.import_module(f"kernels.{op}.triton")
    bwd_op = next(name for name in vars(module) if name.endswith("_bwd_op"))

    def refuse(*args):
        raise AssertionError(f"the eager backward called {bwd_op}")

    monkeypatch.setattr(module, bwd_op, refuse)
    out = _eager_cases()[op]()
    assert type(out.grad_fn).__name__ == "EagerBackward"
    out.float().square().sum().backward()


def test_tuned_configs_lists_what_each_autotuned_kernel_chose(monkeypatch) -> None:
    """The configs an autotuned kernel chose (or read from Triton's cache), per key, by name, the key without the
    tensors' dtypes; a module's kernels that never tuned list nothing."""
    import types

    from kernels._triton import tuned_configs

    @triton.jit
    def _k(x_ptr, N, BN: tl.constexpr):
        pass

    tuned = triton.autotune(tiles(("BN",), [(64,), (32,)], (4, 2), (8, 2, 128)), key=["N"])(_k)
    untouched = triton.autotune(tiles(("BN",), [(64,)], (4, 2)), key=["N"])(_k)
    tuned.cache[(2048, "torch.bfloat16")] = tuned.configs[3]
    module = types.SimpleNamespace(kernel_a=tuned, kernel_b=untouched, not_a_kernel=3)
    assert tuned_configs(module) == [("kernel_a", "2048", "BN 32, 8 warps, 2 stages, ≤ 128 registers")]
