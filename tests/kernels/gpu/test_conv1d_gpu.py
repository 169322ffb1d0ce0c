"""Causal conv1d (+ SiLU) on the GPU, fp32 and bf16: output and every gradient against fp64."""

from __future__ import annotations

import pytest
import torch
from gpu_cases import DTYPES, LENGTHS, compare, dtype_id, in_fp64, on_gpu
from kernel_inputs import conv1d_inputs

from kernels.conv1d import causal_conv1d

SMALL = [  # (B, T, C, W), options, activation
    *(((2, T, 24, 4), "bias-state", "silu") for T in LENGTHS),
    ((2, 65, 24, 4), "plain", None),
    ((1, 300, 200, 4), "bias", "silu"),  # partial blocks of tokens and channels at every tile size tuned
    ((2, 9, 8, 2), "bias-state", None),
    ((1, 300, 200, 3), "bias-state", "silu"),  # an odd width (LFM2's); g kernel parts of 128 tokens, one partial
]
LARGE = [
    ((32, 2048, 1664, 4), "bias", "silu"),  # a 25M Mamba-2 proxy's conv at B32 T2048 (d_inner 832 + 2·G·N)
    ((2, 16384, 768, 4), "bias", "silu"),
]


def case_id(case: tuple) -> str:
    (B, T, C, W), options, activation = case
    return f"B{B}-T{T}-C{C}-W{W}-{options}-{activation or 'none'}"


def run(case: tuple, dtype: torch.dtype, record) -> None:
    dims, options, activation = case
    inputs = on_gpu(conv1d_inputs(*dims, options, dtype))
    if "initial_state" in inputs:  # the Triton path takes no gradient for the state: a constant here
        inputs["initial_state"] = inputs["initial_state"].detach()
    y = causal_conv1d(**inputs, activation=activation, backend="triton")
    ref_all = in_fp64(inputs)
    if "initial_state" in ref_all:
        ref_all["initial_state"] = ref_all["initial_state"].detach()
    ref = causal_conv1d(**ref_all, activation=activation, backend="reference")
    leaves = {k: v for k, v in inputs.items() if v.requires_grad}
    compare((y,), (ref,), ("y",), leaves, {k: ref_all[k] for k in leaves}, dtype, record)


@pytest.mark.parametrize("case", SMALL, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_conv1d_small(dtype: torch.dtype, case: tuple, record_property) -> None:
    run(case, dtype, record_property)


@pytest.mark.parametrize("case", LARGE, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_conv1d_large(dtype: torch.dtype, case: tuple, record_property) -> None:
    run(case, dtype, record_property)


def test_conv1d_large_offsets_past_2_31() -> None:
    """B·T·C over 2³¹ elements (batch 64 at a 64K prefill holds that many): offsets in 64 bits. The last
    sequence, whose elements all lie past 2³¹, against the reference on that sequence alone."""
    B, T, C = 17, 65536, 2048
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(B, T, C, device="cuda", dtype=torch.bfloat16, generator=gen)
    weight = torch.randn(C, 4, device="cuda", generator=gen) / 4
    bias = torch.randn(C, device="cuda", generator=gen)
    assert x.numel() > 2**31 and (B - 1) * T * C >= 2**31
    with torch.no_grad():
        y = causal_conv1d(x, weight, bias, activation="silu", backend="triton")
        ref = causal_conv1d(x[-1:].float(), weight, bias, activation="silu", backend="reference")
    torch.testing.assert_close(y[-1:].float(), ref, atol=2e-2, rtol=2e-2)

