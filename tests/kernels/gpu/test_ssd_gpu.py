"""Mamba-2 SSD on the GPU, fp32 and bf16: output, final state and every gradient against fp64."""

from __future__ import annotations

import pytest
import torch
from gpu_cases import DTYPES, LENGTHS, TOLERANCES, compare, dtype_id, in_fp64, on_gpu
from kernel_inputs import ssd_inputs

from kernels.ssd import ssd, ssd_step
from kernels.ssd.reference import ssd_chunked, ssd_recurrent
from kernels.testing import assert_close

SMALL = [  # (B, T, H, P, N, G, chunk_size), options
    # P and N below 16 and no powers of two, heads sharing groups: every length, bare and with everything
    *(((2, T, 4, 12, 6, 2, 64), options) for T in LENGTHS for options in ("plain", "D-z-state")),
    *(((2, 65, 4, 12, 6, 2, 64), options) for options in ("D", "z", "state")),
    # issue 11: fp32 died here on the H200 with an illegal memory access (N = 8, a padded tile)
    *(((2, 37, 4, 16, 8, 2, L), options) for L in (16, 64) for options in ("plain", "D-z-state")),
    # chunks of 16, of no power of two, and the largest (five chunks, the last one token long)
    *(((1, 257, 4, 12, 6, 2, L), "D-z-state") for L in (16, 37, 128)),
    ((1, 45, 2, 48, 80, 1, 20), "D-z-state"),  # P and N over several blocks
]
LARGE = [
    ((16, 2048, 16, 64, 64, 1, 64), "D"),  # the shapes of benchmarks/kernels.py (D, as in Mamba-2)
    ((16, 2048, 16, 64, 64, 1, 128), "D"),
    ((8, 8192, 16, 64, 128, 1, 64), "D"),
    ((4, 16384, 32, 64, 128, 1, 64), "D"),
    ((1, 16384, 8, 64, 128, 2, 128), "D-z-state"),  # a long sequence with everything
]


def case_id(case: tuple) -> str:
    (B, T, H, P, N, G, L), options = case
    return f"B{B}-T{T}-H{H}-P{P}-N{N}-G{G}-L{L}-{options}"


def reference(inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token by token for short sequences; beyond, the chunked form (checked against it on the CPU)."""
    if inputs["x"].shape[1] <= 64:
        return ssd_recurrent(**inputs)
    return ssd_chunked(**inputs, chunk_size=64)


def run(case: tuple, dtype: torch.dtype, record) -> None:
    (*dims, chunk_size), options = case
    inputs = on_gpu(ssd_inputs(*dims, options, dtype))
    y, state = ssd(**inputs, return_final_state=True, chunk_size=chunk_size, backend="triton")
    assert y.dtype == dtype and state.dtype == torch.float32
    ref_inputs = in_fp64(inputs)
    compare((y, state), reference(ref_inputs), ("y", "final_state"), inputs, ref_inputs, dtype, record)


@pytest.mark.parametrize("case", SMALL, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_ssd_small(dtype: torch.dtype, case: tuple, record_property) -> None:
    run(case, dtype, record_property)


@pytest.mark.parametrize("case", LARGE, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_ssd_large(dtype: torch.dtype, case: tuple, record_property) -> None:
    run(case, dtype, record_property)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_ssd_split_small(dtype: torch.dtype, record_property) -> None:
    """A sequence run in two pieces, the state carried from the first, equals the whole: the outputs and
    every gradient, through the carried state too."""
    inputs = on_gpu(ssd_inputs(2, 257, 4, 12, 6, 2, "D-z-state", dtype))

    def piece(t: slice, initial_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_token = {name: inputs[name][:, t] for name in ("x", "dt", "B", "C", "z")}
        return ssd(**per_token, A=inputs["A"], D=inputs["D"], initial_state=initial_state,
                   return_final_state=True, backend="triton")

    y1, state1 = piece(slice(None, 100), inputs["initial_state"])
    y2, state2 = piece(slice(100, None), state1)
    ref_inputs = in_fp64(inputs)
    compare((torch.cat([y1, y2], dim=1), state2), reference(ref_inputs), ("y", "final_state"), inputs, ref_inputs,
            dtype, record_property)


@pytest.mark.parametrize("dims", [(2, 257, 4, 12, 6, 2), (32, 2048, 14, 64, 64, 1)], ids=["small", "large-hybrid"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_ssd_reads_slices_of_the_conv_output(dtype: torch.dtype, dims: tuple) -> None:
    """x, B and C cut from one [B, T, width] tensor (Mamba-2's conv output; the large case is the 25M hybrid
    proxy's layer), read in place, give what contiguous copies of them give: the output and every gradient."""
    b, T, H, P, N, G = dims
    gen = torch.Generator(device="cuda").manual_seed(0)
    xbc = torch.randn(b, T, H * P + 2 * G * N, device="cuda", dtype=dtype, generator=gen)
    dt = torch.rand(b, T, H, device="cuda", generator=gen) * 0.1
    A, D = -torch.rand(H, device="cuda", generator=gen) - 0.5, torch.randn(H, device="cuda", generator=gen)
    dy = torch.randn(b, T, H, P, device="cuda", dtype=dtype, generator=gen)

    def run(contiguous: bool) -> tuple[torch.Tensor, ...]:
        leaf = xbc.clone().requires_grad_()
        x, B, C = leaf.split([H * P, G * N, G * N], dim=-1)
        x, B, C = x.view(b, T, H, P), B.view(b, T, G, N), C.view(b, T, G, N)
        if contiguous:
            x, B, C = x.contiguous(), B.contiguous(), C.contiguous()
        y = ssd(x, dt, A, B, C, D=D, backend="triton")
        return (y, *torch.autograd.grad(y, (leaf,), dy))

    for name, got, want in zip(("y", "d(xBC)"), run(False), run(True)):
        torch.testing.assert_close(got, want, rtol=0, atol=0, msg=lambda m, name=name: f"{name}: {m}")


STEP = [  # (B, H, P, N, G), options: the decode step, one kernel updating the state in place
    ((2, 4, 12, 6, 2), "plain"),
    ((2, 4, 12, 6, 2), "D-z-state"),
    ((1, 2, 48, 80, 1), "D-z-state"),
    ((64, 16, 64, 128, 1), "D-state"),  # the 25M Mamba-2 proxy decoding at batch 64
    ((64, 32, 64, 128, 8), "D-z-state"),
]


@pytest.mark.parametrize("case", STEP, ids=lambda c: "B{}-H{}-P{}-N{}-G{}-".format(*c[0]) + c[1])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_ssd_step(dtype: torch.dtype, case: tuple) -> None:
    """Eight steps advancing one state in place equal the fp64 reference's eight steps."""
    (b, H, P, N, G), options = case
    inputs = {k: v.detach() for k, v in ssd_inputs(b, 8, H, P, N, G, options, dtype).items()}
    state = inputs.pop("initial_state", torch.zeros(b, H, P, N)).float()
    ref_state, gpu_state = state.double(), state.cuda()
    for t in range(8):
        tok = {k: v[:, t] if k in ("x", "dt", "B", "C", "z") else v for k, v in inputs.items()}
        y, out = ssd_step(**{k: v.cuda() for k, v in tok.items()}, state=gpu_state, inplace=True, backend="triton")
        ref_y, ref_state = ssd_step(**{k: v.double() for k, v in tok.items()}, state=ref_state, backend="reference")
        assert out is gpu_state and y.dtype == dtype
        assert_close(f"y[{t}]", y.cpu(), ref_y, TOLERANCES[dtype][0])
    assert_close("state", gpu_state.cpu(), ref_state, 1e-3)
