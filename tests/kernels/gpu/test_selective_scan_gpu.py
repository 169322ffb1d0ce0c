"""Mamba-1 selective scan on the GPU, fp32 and bf16: output, final state and every gradient against fp64."""

from __future__ import annotations

import pytest
import torch
from gpu_cases import DTYPES, LENGTHS, compare, dtype_id, in_fp64, on_gpu
from kernel_inputs import selective_scan_inputs

from kernels.selective_scan import selective_scan
from kernels.selective_scan.reference import selective_scan_blocked, selective_scan_recurrent

SMALL = [  # (B, T, Dc, N, G or None: B and C are [B, T, N]), options
    # N below 16 and no power of two, channels sharing groups: every length, bare and with everything
    *(((2, T, 24, 6, 2), options) for T in LENGTHS for options in ("plain", "D-z-state")),
    *(((2, 65, 24, 6, 2), options) for options in ("D", "z", "state")),
    ((2, 37, 24, 6, None), "D-z-state"),  # B and C without a group dimension
    ((1, 48, 96, 16, None), "D-z-state"),  # twelve full blocks of channels, six of tokens
    ((1, 20, 6, 3, 2), "D-z-state"),  # three channels per group, a state of three
]
LARGE = [
    ((16, 2048, 2048, 16, None), "D-z"),  # the shape of benchmarks/kernels.py (z and D, as in Mamba)
    ((1, 16384, 1024, 16, None), "D-z-state"),
]


def case_id(case: tuple) -> str:
    (B, T, Dc, N, G), options = case
    return f"B{B}-T{T}-D{Dc}-N{N}" + ("" if G is None else f"-G{G}") + f"-{options}"


def reference(inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token by token for short sequences; beyond, the blocked scan (checked against it on the CPU)."""
    if inputs["u"].shape[1] <= 64:
        return selective_scan_recurrent(**inputs)
    return selective_scan_blocked(**inputs)


def run(case: tuple, dtype: torch.dtype, record) -> None:
    dims, options = case
    inputs = on_gpu(selective_scan_inputs(*dims, options, dtype))
    y, state = selective_scan(**inputs, return_final_state=True, backend="triton")
    assert y.dtype == dtype and state.dtype == torch.float32
    ref_inputs = in_fp64(inputs)
    compare((y, state), reference(ref_inputs), ("y", "final_state"), inputs, ref_inputs, dtype, record)


@pytest.mark.parametrize("case", SMALL, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_selective_scan_small(dtype: torch.dtype, case: tuple, record_property) -> None:
    run(case, dtype, record_property)


@pytest.mark.parametrize("block_t", [4, 16])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_selective_scan_other_blocks_small(dtype: torch.dtype, block_t: int, record_property, monkeypatch) -> None:
    """Blocks of tokens other than the default's 8, the last one partial."""
    import kernels.selective_scan.triton as scan_kernels

    monkeypatch.setattr(scan_kernels, "BLOCK_T", block_t)
    run(((2, 65, 24, 6, 2), "D-z-state"), dtype, record_property)


@pytest.mark.parametrize("case", LARGE, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_selective_scan_large(dtype: torch.dtype, case: tuple, record_property) -> None:
    run(case, dtype, record_property)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_selective_scan_split_small(dtype: torch.dtype, record_property) -> None:
    """A sequence run in two pieces, the state carried from the first, equals the whole: the outputs and
    every gradient, through the carried state too."""
    inputs = on_gpu(selective_scan_inputs(2, 257, 24, 6, 2, "D-z-state", dtype))

    def piece(t: slice, initial_state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        per_token = {name: inputs[name][:, t] for name in ("u", "delta", "B", "C", "z")}
        return selective_scan(**per_token, A=inputs["A"], D=inputs["D"], initial_state=initial_state,
                              return_final_state=True, backend="triton")

    y1, state1 = piece(slice(None, 100), inputs["initial_state"])
    y2, state2 = piece(slice(100, None), state1)
    ref_inputs = in_fp64(inputs)
    compare((torch.cat([y1, y2], dim=1), state2), reference(ref_inputs), ("y", "final_state"), inputs, ref_inputs,
            dtype, record_property)
