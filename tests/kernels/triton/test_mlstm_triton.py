"""xLSTM mLSTM, Triton kernels under the interpreter: outputs, final state, gradients vs the recurrence."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernel_inputs import (
    as_reference_inputs,
    assert_compiles_whole,
    compare_with_reference,
    mlstm_inputs,
    strided_view,
    tolerance,
)

from kernels.mlstm import mlstm
from kernels.mlstm.reference import mlstm_recurrent
from kernels.testing import assert_close

CASES = [  # (B, T, H, K, V, chunk_size), options
    ((2, 37, 3, 16, 8, 16), "empty"),
    ((2, 37, 3, 16, 8, 16), "state"),
    ((2, 1, 2, 8, 16, 64), "state"),  # one token
    ((1, 257, 2, 16, 32, 64), "empty"),  # five chunks, the last one token long
    ((1, 257, 2, 16, 32, 64), "state"),
    ((1, 64, 2, 8, 8, 16), "state"),  # exactly four chunks
    ((1, 45, 2, 72, 80, 20), "state"),  # a chunk size that is no power of two; K and V over several blocks
]
STATE = ("C0", "n0", "m0")
TRITON = {"backend": "triton"}


def case_id(case: tuple) -> str:
    (B, T, H, K, V, L), options = case
    return f"B{B}-T{T}-H{H}-K{K}-V{V}-L{L}-{options}"


def split(inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple | None]:
    state = tuple(inputs[name] for name in STATE) if "C0" in inputs else None
    return {name: t for name, t in inputs.items() if name not in STATE}, state


def run(inputs: dict[str, torch.Tensor], chunk_size: int, dtype: torch.dtype) -> None:
    args, state0 = split(inputs)
    h, state = mlstm(
        **args, initial_state=state0, return_final_state=True, chunk_size=chunk_size, backend="triton"
    )
    assert h.dtype == dtype and all(s.dtype == torch.float32 for s in state)
    ref_inputs = as_reference_inputs(inputs)
    ref_args, ref_state0 = split(ref_inputs)
    ref_h, ref_state = mlstm_recurrent(**ref_args, initial_state=ref_state0)
    compare_with_reference(
        (h, *state), (ref_h, *ref_state), ("h", "final C", "final n", "final m"),
        inputs, ref_inputs, tolerance(dtype),
    )


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_mlstm_triton(case: tuple) -> None:
    (*dims, chunk_size), options = case
    run(mlstm_inputs(*dims, options), chunk_size, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_mlstm_triton_dqk_in_blocks_of_16_keys(dtype, monkeypatch) -> None:
    """`KERNELS_MLSTM_DQK_BK`: the dq/dk kernel in blocks of 16 of K's 72 (five blocks, the last partial), each
    with its own partial sums for the gates, gives the reference's gradients."""
    monkeypatch.setenv("KERNELS_MLSTM_DQK_BK", "16")
    (*dims, chunk_size), options = CASES[6]
    run(mlstm_inputs(*dims, options, dtype=dtype), chunk_size, dtype)


def test_mlstm_triton_refuses_a_dqk_block_that_is_no_power_of_two(monkeypatch) -> None:
    monkeypatch.setenv("KERNELS_MLSTM_DQK_BK", "48")
    (*dims, chunk_size), options = CASES[0]
    args, _ = split(mlstm_inputs(*dims, options))
    h, _ = mlstm(**args, return_final_state=True, chunk_size=chunk_size, backend="triton")
    with pytest.raises(ValueError, match="KERNELS_MLSTM_DQK_BK=48: use a power of two of at least 16"):
        h.sum().backward()


@pytest.mark.parametrize("case", [CASES[1], CASES[4]], ids=case_id)
def test_mlstm_triton_bf16(case: tuple) -> None:
    (*dims, chunk_size), options = case
    run(mlstm_inputs(*dims, options, dtype=torch.bfloat16), chunk_size, torch.bfloat16)


def test_mlstm_triton_lower_bound() -> None:
    """Tokens where exp(-m) bounds the denominator (tiny q), and gates that swing m: gradients still match."""
    inputs = mlstm_inputs(2, 37, 2, 8, 16, "state")
    with torch.no_grad():
        inputs["q"][:, ::3] *= 1e-3
        inputs["i"][:, 5::7] += 6.0
        inputs["f"][:, 10:20] -= 8.0
    run(inputs, 16, torch.float32)


def test_mlstm_triton_split_sequence() -> None:
    """The second half started from the first half's final state continues the whole sequence."""
    inputs, state0 = split({name: t.detach() for name, t in mlstm_inputs(2, 37, 2, 8, 16, "state").items()})
    h, state = mlstm(**inputs, initial_state=state0, return_final_state=True, chunk_size=16, backend="triton")
    first = {name: t[:, :20] for name, t in inputs.items()}
    second = {name: t[:, 20:] for name, t in inputs.items()}
    h1, state1 = mlstm(**first, initial_state=state0, return_final_state=True, chunk_size=16, **TRITON)
    h2, state2 = mlstm(**second, initial_state=state1, return_final_state=True, chunk_size=16, **TRITON)
    assert_close("h", torch.cat([h1, h2], dim=1), h, 1e-4)
    for name, s, whole in zip("Cnm", state2, state):
        assert_close(f"final_state {name}", s, whole, 1e-4)


def test_mlstm_triton_is_the_default_only_on_cuda() -> None:
    inputs, _ = split({name: t.detach() for name, t in mlstm_inputs(1, 5, 2, 8, 16, "empty").items()})
    assert torch.equal(mlstm(**inputs), mlstm(**inputs, backend="reference"))  # CPU tensors: the reference
    assert_close("h", mlstm(**inputs, backend="triton"), mlstm(**inputs), 1e-4)


def test_mlstm_triton_refuses_other_dtypes() -> None:
    inputs, _ = split({name: t.detach() for name, t in mlstm_inputs(1, 5, 2, 8, 16, "empty").items()})
    inputs["v"] = inputs["v"].half()
    message = r"mlstm: backend='triton' takes float32 or bfloat16 tensors, but v is torch.float16; cast it, or use"
    with pytest.raises(TypeError, match=message):
        mlstm(**inputs, backend="triton")


def test_mlstm_triton_strided_inputs() -> None:
    """Views with gaps and permuted strides give exactly what their contiguous copies give."""
    inputs, state0 = split({name: t.detach() for name, t in mlstm_inputs(2, 37, 2, 8, 16, "state").items()})
    strided = {name: strided_view(t) for name, t in inputs.items()}
    strided_state = tuple(strided_view(t) for t in state0)
    h, state = mlstm(**strided, initial_state=strided_state, return_final_state=True, chunk_size=16, **TRITON)
    ref_h, ref_state = mlstm(**inputs, initial_state=state0, return_final_state=True, chunk_size=16, **TRITON)
    assert torch.equal(h, ref_h) and all(torch.equal(s, r) for s, r in zip(state, ref_state))


@pytest.mark.parametrize("options", ["empty", "state"])
def test_mlstm_triton_compiles_whole(options: str) -> None:
    """The Triton path is a PyTorch operator with its autograd and shapes registered: torch.compile traces
    around it with no graph break, and the compiled gradients are the eager ones."""
    def call(**inputs):
        args, state0 = split(inputs)
        return mlstm(**args, initial_state=state0, return_final_state=True, chunk_size=16, **TRITON)

    assert_compiles_whole(call, mlstm_inputs(2, 37, 3, 16, 8, options))


def test_mlstm_ops_pass_opcheck() -> None:
    """torch.library.opcheck: the operators' schemas, fake (shape and stride) functions and autograd
    registration agree with what they do, the backward's too."""
    from kernels.mlstm.triton import mlstm_bwd_op, mlstm_fwd_op

    t = {n: v.detach() for n, v in mlstm_inputs(1, 20, 2, 8, 8, "state").items()}
    args = (t["q"], t["k"], t["v"], t["i"], t["f"], t["C0"], t["n0"], t["m0"], 16)
    with torch.no_grad():
        h, Cf, nf, mf, *saved = mlstm_fwd_op(*args)
    for has_init in (True, False):
        torch.library.opcheck(mlstm_bwd_op, (torch.randn_like(h), torch.randn_like(Cf), torch.randn_like(nf),
                                             torch.randn_like(mf), *args[:5], h, Cf, nf, mf, *saved,
                                             t["m0"] if has_init else None, 16, has_init),
                              test_utils=("test_schema", "test_faketensor"))
    for a in args[:8]:
        a.requires_grad_(True)
    torch.library.opcheck(mlstm_fwd_op, args, test_utils=("test_schema", "test_autograd_registration",
                                                           "test_faketensor", "test_aot_dispatch_dynamic"))
