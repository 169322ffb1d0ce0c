"""Mamba-1 selective scan, Triton kernels under the interpreter: outputs, final state, every gradient."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernel_inputs import (
    as_reference_inputs,
    assert_compiles_whole,
    compare_with_reference,
    selective_scan_inputs,
    strided_view,
    tolerance,
)

import kernels.selective_scan.triton as scan_kernels
from kernels.selective_scan import selective_scan
from kernels.selective_scan.reference import selective_scan_recurrent
from kernels.testing import assert_close

CASES = [  # (B, T, Dc, N, G or None: B and C are [B, T, N]), options
    *(((2, 37, 32, 8, 2), options) for options in ("plain", "D", "z", "state", "D-z-state")),
    ((2, 1, 16, 8, None), "D-z-state"),  # one token
    ((1, 257, 32, 8, 4), "plain"),  # 33 blocks of 8, the last one token long
    ((1, 257, 32, 8, 4), "D-z-state"),
    ((1, 48, 96, 16, None), "D-z-state"),  # twelve full blocks of channels, six of tokens
    ((1, 20, 6, 3, 2), "D-z-state"),  # three channels per group, a state of three
]


def case_id(case: tuple) -> str:
    (B, T, Dc, N, G), options = case
    return f"B{B}-T{T}-D{Dc}-N{N}" + ("" if G is None else f"-G{G}") + f"-{options}"


def run(inputs: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    y, state = selective_scan(**inputs, return_final_state=True, backend="triton")
    assert y.dtype == dtype and state.dtype == torch.float32
    ref_inputs = as_reference_inputs(inputs)
    ref_y, ref_state = selective_scan_recurrent(**ref_inputs)
    compare_with_reference(
        (y, state), (ref_y, ref_state), ("y", "final_state"), inputs, ref_inputs, tolerance(dtype)
    )


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_selective_scan_triton(case: tuple) -> None:
    dims, options = case
    run(selective_scan_inputs(*dims, options), torch.float32)


@pytest.mark.parametrize("case", [CASES[4], CASES[7]], ids=case_id)
def test_selective_scan_triton_bf16(case: tuple) -> None:
    dims, options = case
    run(selective_scan_inputs(*dims, options, dtype=torch.bfloat16), torch.bfloat16)


def test_selective_scan_triton_associative_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU path's `tl.associative_scan` (slow under the interpreter, hence the tiny shape)."""
    monkeypatch.setattr(scan_kernels, "FORCE_ASSOCIATIVE_SCAN", True)
    run(selective_scan_inputs(1, 20, 4, 2, 2, "D-z-state"), torch.float32)


@pytest.mark.parametrize("block_t", [4, 16])
def test_selective_scan_triton_at_other_blocks_of_tokens(block_t: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """BLOCK_T is the kernels' constexpr BT and the spacing of the saved states: other blocks than the default's
    (`benchmarks/kernels.py --scan-blocks` times them) give the same sums, the last block partial."""
    assert block_t != scan_kernels.BLOCK_T
    monkeypatch.setattr(scan_kernels, "BLOCK_T", block_t)
    run(selective_scan_inputs(1, 37, 32, 8, 2, "D-z-state"), torch.float32)


def test_selective_scan_triton_split_sequence() -> None:
    """The second half started from the first half's final state continues the whole sequence."""
    inputs = {name: t.detach() for name, t in selective_scan_inputs(2, 150, 32, 8, 2, "D-z-state").items()}
    per_token = ("u", "delta", "B", "C", "z")

    def part(t: slice) -> dict[str, torch.Tensor]:
        return {k: v[:, t] if k in per_token else v for k, v in inputs.items() if k != "initial_state"}

    y, state = selective_scan(**inputs, return_final_state=True, backend="triton")
    y1, state1 = selective_scan(
        **part(slice(None, 70)), initial_state=inputs["initial_state"], return_final_state=True,
        backend="triton",
    )
    y2, state2 = selective_scan(**part(slice(70, None)), initial_state=state1, return_final_state=True,
                                backend="triton")
    assert_close("y", torch.cat([y1, y2], dim=1), y, 1e-4)
    assert_close("final_state", state2, state, 1e-4)


def test_selective_scan_triton_is_the_default_only_on_cuda() -> None:
    inputs = {name: t.detach() for name, t in selective_scan_inputs(1, 5, 16, 4, None, "plain").items()}
    assert torch.equal(selective_scan(**inputs), selective_scan(**inputs, backend="reference"))
    assert_close("y", selective_scan(**inputs, backend="triton"), selective_scan(**inputs), 1e-4)


def test_selective_scan_triton_refuses_other_dtypes() -> None:
    inputs = {name: t.detach() for name, t in selective_scan_inputs(1, 5, 16, 4, None, "plain").items()}
    inputs["A"] = inputs["A"].double()
    message = r"selective_scan: backend='triton' takes float32 or bfloat16 tensors, but A is torch.float64; cast"
    with pytest.raises(TypeError, match=message):
        selective_scan(**inputs, backend="triton")


def test_selective_scan_triton_strided_inputs() -> None:
    """Views with gaps and permuted strides give exactly what their contiguous copies give."""
    inputs = {name: t.detach() for name, t in selective_scan_inputs(2, 37, 32, 8, 2, "D-z-state").items()}
    strided = {name: strided_view(t) for name, t in inputs.items()}
    y, state = selective_scan(**strided, return_final_state=True, backend="triton")
    ref_y, ref_state = selective_scan(**inputs, return_final_state=True, backend="triton")
    assert torch.equal(y, ref_y) and torch.equal(state, ref_state)


@pytest.mark.parametrize("case", [((2, 37, 32, 8, 2), "plain"), ((2, 20, 16, 8, None), "D-z-state")], ids=case_id)
def test_selective_scan_triton_compiles_whole(case: tuple) -> None:
    """The Triton path is a PyTorch operator with its autograd and shapes registered: torch.compile traces
    around it with no graph break, and the compiled gradients are the eager ones (B and C ungrouped too)."""
    def call(**args):
        return selective_scan(**args, return_final_state=True, backend="triton")

    assert_compiles_whole(call, selective_scan_inputs(*case[0], case[1]))


def test_selective_scan_ops_pass_opcheck() -> None:
    """torch.library.opcheck: the operators' schemas, fake (shape and stride) functions and autograd
    registration agree with what they do, the backward's too; a forward without gradients saves nothing."""
    from kernels.selective_scan.triton import selective_scan_bwd_op, selective_scan_fwd_op

    t = {n: v.detach() for n, v in selective_scan_inputs(1, 20, 8, 4, 2, "D-z-state").items()}
    args = (t["u"], t["delta"], t["A"], t["B"], t["C"], t["D"], t["z"], t["initial_state"])
    with torch.no_grad():
        y, final, saved = selective_scan_fwd_op(*args, True)
        assert selective_scan_fwd_op(*args, False)[2].numel() == 0
    for D, z in ((t["D"], t["z"]), (None, None)):
        torch.library.opcheck(selective_scan_bwd_op, (torch.randn_like(y), torch.randn_like(final), *args[:5], D, z,
                                                      saved), test_utils=("test_schema", "test_faketensor"))
    for a in args:
        a.requires_grad_(True)
    torch.library.opcheck(selective_scan_fwd_op, (*args, True), test_utils=(
        "test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic"))


def test_one_or_two_warps_are_tuned_only_for_narrow_blocks() -> None:
    """1 and 2 warps spill where each holds more than 64 tokens × channels: 8 × 32 tunes 4 and 8 warps only, 8 × 16
    also 2, the default 8 × 8 also 1."""
    from kernels._triton import prune_configs

    def counts(BT: int, BD: int) -> list[int]:
        configs = prune_configs(scan_kernels.SCAN_WARPS, {}, {"BT": BT, "BD": BD}, fits=scan_kernels.warps_fit)
        return sorted(c.num_warps for c in configs)

    assert counts(8, 32) == counts(16, 16) == [4, 8]
    assert counts(8, 16) == [2, 4, 8]
    assert counts(8, 8) == [1, 2, 4, 8]
