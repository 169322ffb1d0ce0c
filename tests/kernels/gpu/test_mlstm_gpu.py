"""xLSTM mLSTM on the GPU, fp32 and bf16: output, final state (C, n, m) and every gradient against fp64."""

from __future__ import annotations

import pytest
import torch
from gpu_cases import DTYPES, LENGTHS, compare, dtype_id, in_fp64, on_gpu
from kernel_inputs import mlstm_inputs

from kernels.mlstm import mlstm
from kernels.mlstm.reference import mlstm_chunked, mlstm_recurrent

SMALL = [  # (B, T, H, K, V, chunk_size), options
    # K and V below 16 and no powers of two: every length, from the empty state and from a given one
    *(((2, T, 3, 12, 10, 64), options) for T in LENGTHS for options in ("empty", "state")),
    # chunks of 16, of no power of two, and the largest (five chunks, the last one token long)
    *(((1, 257, 2, 12, 10, L), "state") for L in (16, 20, 128)),
    ((1, 45, 2, 72, 80, 20), "state"),  # K and V over several blocks
]
LARGE = [
    ((16, 2048, 4, 128, 256, 64), "empty"),  # the shapes of benchmarks/kernels.py
    ((16, 2048, 4, 128, 256, 128), "empty"),
    ((4, 8192, 4, 128, 256, 64), "empty"),
    ((1, 16384, 4, 128, 256, 64), "state"),
]
NAMES = ("h", "final C", "final n", "final m")
STATE = ("C0", "n0", "m0")


def case_id(case: tuple) -> str:
    (B, T, H, K, V, L), options = case
    return f"B{B}-T{T}-H{H}-K{K}-V{V}-L{L}-{options}"


def split_state(inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple | None]:
    state = tuple(inputs[name] for name in STATE) if "C0" in inputs else None
    return {name: t for name, t in inputs.items() if name not in STATE}, state


def reference(inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """Token by token for short sequences; beyond, the chunked form (checked against it on the CPU)."""
    args, state0 = split_state(inputs)
    if args["q"].shape[1] <= 64:
        h, state = mlstm_recurrent(**args, initial_state=state0)
    else:
        h, state = mlstm_chunked(**args, initial_state=state0, chunk_size=64)
    return h, *state


def run(case: tuple, dtype: torch.dtype, record, adjust=None) -> None:
    (*dims, chunk_size), options = case
    inputs = mlstm_inputs(*dims, options, dtype)
    if adjust is not None:
        adjust(inputs)
    inputs = on_gpu(inputs)
    args, state0 = split_state(inputs)
    h, state = mlstm(**args, initial_state=state0, return_final_state=True, chunk_size=chunk_size, backend="triton")
    assert h.dtype == dtype and all(s.dtype == torch.float32 for s in state)
    ref_inputs = in_fp64(inputs)
    compare((h, *state), reference(ref_inputs), NAMES, inputs, ref_inputs, dtype, record)


@pytest.mark.parametrize("case", SMALL, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_mlstm_small(dtype: torch.dtype, case: tuple, record_property) -> None:
    run(case, dtype, record_property)


@pytest.mark.parametrize("case", LARGE, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_mlstm_large(dtype: torch.dtype, case: tuple, record_property) -> None:
    run(case, dtype, record_property)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_mlstm_lower_bound_small(dtype: torch.dtype, record_property) -> None:
    """Tokens where exp(-m) bounds the denominator (tiny q), and gates that swing m."""

    def adjust(inputs: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            inputs["q"][:, ::3] *= 1e-3
            inputs["i"][:, 5::7] += 6.0
            inputs["f"][:, 10:20] -= 8.0

    run(((2, 257, 2, 12, 10, 64), "state"), dtype, record_property, adjust)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_mlstm_split_small(dtype: torch.dtype, record_property) -> None:
    """A sequence run in two pieces, the state (C, n, m) carried from the first, equals the whole: the
    outputs and every gradient, through the carried state too."""
    inputs = on_gpu(mlstm_inputs(2, 257, 3, 12, 10, "state", dtype))
    args, state0 = split_state(inputs)
    first = {name: t[:, :100] for name, t in args.items()}
    second = {name: t[:, 100:] for name, t in args.items()}
    h1, state1 = mlstm(**first, initial_state=state0, return_final_state=True, backend="triton")
    h2, state2 = mlstm(**second, initial_state=state1, return_final_state=True, backend="triton")
    ref_inputs = in_fp64(inputs)
    compare((torch.cat([h1, h2], dim=1), *state2), reference(ref_inputs), NAMES, inputs, ref_inputs, dtype,
            record_property)
