"""The helpers shared by the Triton kernels: tuned blocks fitted to small dimensions, bf16 rounding."""

from __future__ import annotations

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
