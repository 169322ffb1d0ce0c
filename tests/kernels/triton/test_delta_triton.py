"""The gated delta rule, Triton kernels under the interpreter: outputs, final state, gradients vs the recurrence."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernel_inputs import (
    as_reference_inputs,
    assert_compiles_whole,
    compare_with_reference,
    delta_inputs,
    strided_view,
    tolerance,
)

from kernels.delta import gated_delta
from kernels.delta.reference import gated_delta_recurrent
from kernels.testing import assert_close

CASES = [  # (B, T, H, K, V, chunk_size), options
    # K and V below 16 and no powers of two; a gate per head and per key channel, with and without a state
    *(((2, 37, 3, 12, 10, 16), options) for options in ("plain", "state", "channel", "channel-state")),
    *(((2, T, 2, 12, 10, 64), "state") for T in (1, 2)),  # one and two tokens
    *(((2, T, 2, 12, 10, 64), "channel-state") for T in (1, 2)),
    ((1, 65, 2, 12, 10, 64), "state"),  # two chunks, the last one token long
    ((1, 257, 2, 12, 10, 64), "plain"),  # five chunks, the last one token long
    ((1, 257, 2, 12, 10, 64), "channel-state"),  # seventeen chunks of 16
    ((1, 64, 2, 8, 8, 16), "state"),  # exactly four chunks
    ((1, 45, 2, 72, 80, 20), "state"),  # a chunk size that is no power of two; K and V over several blocks
    ((1, 45, 2, 72, 80, 20), "channel-state"),
    ((2, 37, 2, 12, 10, 16), "state-strong"),  # decays of e^-60 in one step
    ((2, 37, 2, 12, 10, 16), "channel-state-strong"),
]
TRITON = {"backend": "triton"}


def case_id(case: tuple) -> str:
    (B, T, H, K, V, L), options = case
    return f"B{B}-T{T}-H{H}-K{K}-V{V}-L{L}-{options}"


def split(inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    return {n: t for n, t in inputs.items() if n != "initial_state"}, inputs.get("initial_state")


def run(inputs: dict[str, torch.Tensor], chunk_size: int, dtype: torch.dtype) -> None:
    args, state0 = split(inputs)
    o, state = gated_delta(**args, initial_state=state0, return_final_state=True, chunk_size=chunk_size, **TRITON)
    assert o.dtype == dtype and state.dtype == torch.float32
    ref_inputs = as_reference_inputs(inputs)
    ref_args, ref_state0 = split(ref_inputs)
    scale = args["q"].shape[-1] ** -0.5
    ref_o, ref_state = gated_delta_recurrent(**ref_args, initial_state=ref_state0, scale=scale)
    compare_with_reference((o, state), (ref_o, ref_state), ("o", "final_state"), inputs, ref_inputs, tolerance(dtype))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_gated_delta_triton(case: tuple) -> None:
    (*dims, chunk_size), options = case
    run(delta_inputs(*dims, options), chunk_size, torch.float32)


@pytest.mark.parametrize("case", [CASES[1], CASES[3], CASES[10]], ids=case_id)
def test_gated_delta_triton_bf16(case: tuple) -> None:
    (*dims, chunk_size), options = case
    run(delta_inputs(*dims, options, dtype=torch.bfloat16), chunk_size, torch.bfloat16)


def test_gated_delta_triton_only_the_output() -> None:
    """A loss of o alone (no cotangent for the final state) and of the final state alone."""
    inputs = delta_inputs(2, 37, 2, 12, 10, "channel-state")
    args, state0 = split(inputs)
    ref_inputs = as_reference_inputs(inputs)
    ref_args, ref_state0 = split(ref_inputs)
    o, state = gated_delta(**args, initial_state=state0, return_final_state=True, chunk_size=16, **TRITON)
    ref_o, ref_state = gated_delta_recurrent(**ref_args, initial_state=ref_state0, scale=12**-0.5)
    for out, ref in ((o, ref_o), (state, ref_state)):
        grads = torch.autograd.grad(out.square().sum(), list(inputs.values()), retain_graph=True)
        ref_grads = torch.autograd.grad(ref.square().sum(), list(ref_inputs.values()), retain_graph=True,
                                        allow_unused=True)  # the final state does not depend on q
        for name, grad, ref_grad in zip(inputs, grads, ref_grads):
            ref_grad = torch.zeros_like(grad) if ref_grad is None else ref_grad
            assert_close(f"d{name}", grad, ref_grad, 1e-3, zero_atol=1e-6)


@pytest.mark.parametrize("options", ["state", "channel-state"])
def test_gated_delta_triton_split_sequence(options: str) -> None:
    """The second half started from the first half's final state continues the whole sequence."""
    inputs, state0 = split({name: t.detach() for name, t in delta_inputs(2, 37, 2, 12, 10, options).items()})
    o, state = gated_delta(**inputs, initial_state=state0, return_final_state=True, chunk_size=16, **TRITON)
    first = {name: t[:, :20] for name, t in inputs.items()}
    second = {name: t[:, 20:] for name, t in inputs.items()}
    o1, state1 = gated_delta(**first, initial_state=state0, return_final_state=True, chunk_size=16, **TRITON)
    o2, state2 = gated_delta(**second, initial_state=state1, return_final_state=True, chunk_size=16, **TRITON)
    assert_close("o", torch.cat([o1, o2], dim=1), o, 1e-4)
    assert_close("final_state", state2, state, 1e-4)


def test_gated_delta_triton_is_the_default_only_on_cuda() -> None:
    inputs, _ = split({name: t.detach() for name, t in delta_inputs(1, 5, 2, 8, 16, "plain").items()})
    assert torch.equal(gated_delta(**inputs), gated_delta(**inputs, backend="reference"))  # CPU: the reference
    assert_close("o", gated_delta(**inputs, **TRITON), gated_delta(**inputs), 1e-4)


def test_gated_delta_triton_refuses() -> None:
    inputs, _ = split({name: t.detach() for name, t in delta_inputs(1, 5, 2, 8, 16, "plain").items()})
    message = r"gated_delta: backend='triton' takes float32 or bfloat16 tensors, but v is torch.float16; cast it"
    with pytest.raises(TypeError, match=message):
        gated_delta(**{**inputs, "v": inputs["v"].half()}, **TRITON)
    wide = {name: t.detach() for name, t in delta_inputs(1, 3, 1, 260, 4, "plain").items()}
    with pytest.raises(ValueError, match=r"gated_delta: backend='triton' takes K ≤ 256 .*got K=260; use backend="):
        gated_delta(**wide, **TRITON)


def test_gated_delta_triton_strided_inputs() -> None:
    """Views with gaps and permuted strides give exactly what their contiguous copies give."""
    inputs, state0 = split({name: t.detach() for name, t in delta_inputs(2, 37, 2, 12, 10, "channel-state").items()})
    strided = {name: strided_view(t) for name, t in inputs.items()}
    o, state = gated_delta(**strided, initial_state=strided_view(state0), return_final_state=True, **TRITON)
    ref_o, ref_state = gated_delta(**inputs, initial_state=state0, return_final_state=True, **TRITON)
    assert torch.equal(o, ref_o) and torch.equal(state, ref_state)


# the wy kernel's other forms (`KERNELS_DELTA_INVERSE`, `KERNELS_DELTA_WY`) than the default (tiles, split),
# which the other tests run
VARIANTS = [("rows", "fused"), ("tiles", "fused"), ("blocks", "fused"), ("blocks", "split")]


@pytest.mark.parametrize("case", [CASES[i] for i in (1, 3, 5, 10)] + [((1, 130, 2, 12, 10, 64), "state-strong"),
                                                                     ((1, 70, 2, 12, 10, 32), "plain")], ids=case_id)
@pytest.mark.parametrize(("inverse", "form"), VARIANTS, ids=[f"{i}-{f}" for i, f in VARIANTS])
def test_gated_delta_triton_other_wy_forms(inverse: str, form: str, case: tuple, monkeypatch) -> None:
    """Each chunk's (I + A)⁻¹ row by row or by blocks of 16 rows through memory, and T in one kernel with W
    and U', over one, two and four blocks of 16 rows: the recurrence's outputs and gradients."""
    monkeypatch.setenv("KERNELS_DELTA_INVERSE", inverse)
    monkeypatch.setenv("KERNELS_DELTA_WY", form)
    (*dims, chunk_size), options = case
    run(delta_inputs(*dims, options), chunk_size, torch.float32)


@pytest.mark.parametrize("inverse", ["rows", "blocks", "tiles"])
def test_gated_delta_triton_nearly_aligned_keys(inverse: str, monkeypatch) -> None:
    """Keys all nearly the same direction and β near 1, where I + A is the least well conditioned: every
    inverse stays at fp32 accuracy against the fp64 recurrence."""
    monkeypatch.setenv("KERNELS_DELTA_INVERSE", inverse)
    torch.manual_seed(0)
    B, T, H, K, V = 1, 128, 2, 16, 8
    inputs = {
        "q": torch.nn.functional.normalize(torch.randn(B, T, H, K), dim=-1),
        "k": torch.nn.functional.normalize(torch.randn(K) + 0.05 * torch.randn(B, T, H, K), dim=-1),
        "v": torch.randn(B, T, H, V),
        "g": torch.full((B, T, H), -1e-3),
        "beta": torch.full((B, T, H), 0.99),
    }
    o, state = gated_delta(**inputs, return_final_state=True, chunk_size=64, **TRITON)
    ref_o, ref_state = gated_delta_recurrent(**{n: t.double() for n, t in inputs.items()}, scale=K**-0.5)
    assert_close("o", o, ref_o, 1e-4)
    assert_close("final_state", state, ref_state, 1e-4)


def test_gated_delta_triton_refuses_an_unknown_inverse(monkeypatch) -> None:
    monkeypatch.setenv("KERNELS_DELTA_INVERSE", "lu")
    inputs, _ = split({name: t.detach() for name, t in delta_inputs(1, 5, 2, 8, 16, "plain").items()})
    with pytest.raises(ValueError, match=r"KERNELS_DELTA_INVERSE='lu' is not an inverse method; use one of rows, "):
        gated_delta(**inputs, **TRITON)
    monkeypatch.setenv("KERNELS_DELTA_INVERSE", "blocks")
    monkeypatch.setenv("KERNELS_DELTA_WY", "three")
    with pytest.raises(ValueError, match=r"KERNELS_DELTA_WY='three' is not a form of the wy kernel; use one of fused"):
        gated_delta(**inputs, **TRITON)


@pytest.mark.parametrize("options", ["state", "channel-state"])
def test_gated_delta_triton_compiles_whole(options: str) -> None:
    """The Triton path is a PyTorch operator with its autograd and shapes registered: torch.compile traces
    around it with no graph break, and the compiled gradients are the eager ones."""
    def call(initial_state, **args):
        return gated_delta(**args, initial_state=initial_state, return_final_state=True, **TRITON)

    assert_compiles_whole(call, delta_inputs(2, 37, 2, 12, 10, options))


def test_gated_delta_ops_pass_opcheck() -> None:
    """torch.library.opcheck: the operators' schemas, fake (shape and stride) functions and autograd
    registration agree with what they do, the backward's too."""
    from kernels.delta.triton import gated_delta_bwd_op, gated_delta_fwd_op

    tests = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    for options in ("state", "channel-state"):
        inputs, state0 = split({n: t.detach() for n, t in delta_inputs(1, 20, 2, 8, 6, options).items()})
        args = (*inputs.values(), state0.float(), 8**-0.5, 16)
        torch.library.opcheck(gated_delta_fwd_op, tuple(t.requires_grad_(True) if isinstance(t, torch.Tensor) else t
                                                         for t in args), test_utils=tests)
        with torch.no_grad():
            o, Sf, *saved = gated_delta_fwd_op(*args)
        torch.library.opcheck(gated_delta_bwd_op, (torch.randn_like(o), torch.randn_like(Sf), *inputs.values(),
                                                   *saved, 8**-0.5, 16), test_utils=("test_schema", "test_faketensor"))
