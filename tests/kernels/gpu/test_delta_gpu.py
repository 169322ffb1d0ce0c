"""The gated delta rule on the GPU, fp32 and bf16: output, final state and every gradient against fp64."""

from __future__ import annotations

import pytest
import torch
from gpu_cases import DTYPES, LENGTHS, compare, dtype_id, in_fp64, on_gpu
from kernel_inputs import delta_inputs

from kernels.delta import gated_delta
from kernels.delta.reference import gated_delta_chunked, gated_delta_recurrent

GATES = ("plain", "state", "channel", "channel-state")
SMALL = [  # (B, T, H, K, V, chunk_size), options
    # K and V below 16 and no powers of two: every length, a gate per head and per key channel
    *(((2, T, 3, 12, 10, 64), options) for T in LENGTHS for options in GATES),
    # chunks of 16, of no power of two, and the largest (five chunks, the last one token long)
    *(((1, 257, 2, 12, 10, L), "state") for L in (16, 20, 64)),
    *(((1, 45, 2, 72, 80, 20), options) for options in ("state", "channel-state")),  # K and V over blocks
    *(((2, 257, 2, 12, 10, 64), options) for options in ("state-strong", "channel-state-strong")),
]
LARGE = [
    ((8, 2048, 16, 128, 128, 64), "plain"),  # the shapes of benchmarks/kernels.py
    ((8, 2048, 16, 128, 128, 64), "channel"),
    ((2, 8192, 16, 128, 128, 64), "plain"),
    ((1, 16384, 4, 128, 128, 64), "state"),
    ((1, 16384, 4, 128, 128, 64), "channel-state"),
    ((2, 4096, 8, 256, 64, 64), "state"),  # the largest K the kernels take
]
NAMES = ("o", "final_state")


def case_id(case: tuple) -> str:
    (B, T, H, K, V, L), options = case
    return f"B{B}-T{T}-H{H}-K{K}-V{V}-L{L}-{options}"


def split_state(inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    return {n: t for n, t in inputs.items() if n != "initial_state"}, inputs.get("initial_state")


def reference(inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Token by token for short sequences; beyond, the chunked form (checked against it on the CPU)."""
    args, state0 = split_state(inputs)
    scale = args["q"].shape[-1] ** -0.5
    if args["q"].shape[1] <= 64:
        return gated_delta_recurrent(**args, initial_state=state0, scale=scale)
    return gated_delta_chunked(**args, initial_state=state0, scale=scale, chunk_size=64)


def run(case: tuple, dtype: torch.dtype, record) -> None:
    (*dims, chunk_size), options = case
    inputs = on_gpu(delta_inputs(*dims, options, dtype))
    args, state0 = split_state(inputs)
    o, state = gated_delta(**args, initial_state=state0, return_final_state=True, chunk_size=chunk_size,
                           backend="triton")
    assert o.dtype == dtype and state.dtype == torch.float32
    ref_inputs = in_fp64(inputs)
    compare((o, state), reference(ref_inputs), NAMES, inputs, ref_inputs, dtype, record)


@pytest.mark.parametrize("case", SMALL, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_gated_delta_small(dtype: torch.dtype, case: tuple, record_property) -> None:
    run(case, dtype, record_property)


@pytest.mark.parametrize("case", LARGE, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_gated_delta_large(dtype: torch.dtype, case: tuple, record_property) -> None:
    run(case, dtype, record_property)


# the wy kernel's forms other than the default (the inverse by 16×16 tiles in registers, in a kernel of its own
# apart from W and U'): `KERNELS_DELTA_INVERSE` and `KERNELS_DELTA_WY`
VARIANTS = [("rows", "fused"), ("tiles", "fused"), ("blocks", "fused"), ("blocks", "split")]
VARIANT_IDS = [f"{inverse}-{form}" for inverse, form in VARIANTS]
VARIANT_SMALL = [c for c in SMALL if c[0][1] in (1, 37, 65, 257) and "channel" not in c[1]] + [
    c for c in SMALL if c[0][1] == 37 and c[1] == "channel-state"
]


@pytest.mark.parametrize("case", VARIANT_SMALL, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize(("inverse", "form"), VARIANTS, ids=VARIANT_IDS)
def test_gated_delta_variants_small(inverse: str, form: str, dtype: torch.dtype, case: tuple, record_property,
                                    monkeypatch) -> None:
    monkeypatch.setenv("KERNELS_DELTA_INVERSE", inverse)
    monkeypatch.setenv("KERNELS_DELTA_WY", form)
    run(case, dtype, record_property)


@pytest.mark.parametrize("case", [LARGE[0], LARGE[3]], ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize(("inverse", "form"), VARIANTS, ids=VARIANT_IDS)
def test_gated_delta_variants_large(inverse: str, form: str, dtype: torch.dtype, case: tuple, record_property,
                                    monkeypatch) -> None:
    monkeypatch.setenv("KERNELS_DELTA_INVERSE", inverse)
    monkeypatch.setenv("KERNELS_DELTA_WY", form)
    run(case, dtype, record_property)


@pytest.mark.parametrize("options", ["state", "channel-state"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_gated_delta_split_small(dtype: torch.dtype, options: str, record_property) -> None:
    """A sequence run in two pieces, the state carried from the first, equals the whole: the outputs and
    every gradient, through the carried state too."""
    inputs = on_gpu(delta_inputs(2, 257, 3, 12, 10, options, dtype))
    args, state0 = split_state(inputs)
    first = {name: t[:, :100] for name, t in args.items()}
    second = {name: t[:, 100:] for name, t in args.items()}
    o1, state1 = gated_delta(**first, initial_state=state0, return_final_state=True, backend="triton")
    o2, state2 = gated_delta(**second, initial_state=state1, return_final_state=True, backend="triton")
    ref_inputs = in_fp64(inputs)
    compare((torch.cat([o1, o2], dim=1), state2), reference(ref_inputs), NAMES, inputs, ref_inputs, dtype,
            record_property)
