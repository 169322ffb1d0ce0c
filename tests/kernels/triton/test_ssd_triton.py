"""Mamba-2 SSD, Triton kernels under the interpreter: outputs, final state, gradients vs the recurrence."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernel_inputs import (
    as_reference_inputs,
    assert_compiles_whole,
    compare_with_reference,
    ssd_inputs,
    strided_view,
    tolerance,
)

from kernels.ssd import ssd, ssd_step
from kernels.ssd.reference import ssd_recurrent
from kernels.testing import assert_close

CASES = [  # (B, T, H, P, N, G, chunk_size), options
    *(((2, 37, 4, 16, 8, 2, 16), options) for options in ("plain", "D", "z", "state", "D-z-state")),
    ((2, 1, 4, 8, 8, 2, 64), "D-z-state"),  # one token
    ((1, 257, 4, 8, 8, 4, 64), "plain"),  # five chunks, the last one token long
    ((1, 257, 4, 8, 8, 4, 64), "D-z-state"),
    ((1, 64, 2, 8, 4, 1, 16), "D-z-state"),  # exactly four chunks
    ((1, 45, 2, 48, 80, 1, 20), "D-z-state"),  # a chunk size that is no power of two; P and N over blocks
]


def case_id(case: tuple) -> str:
    (B, T, H, P, N, G, L), options = case
    return f"B{B}-T{T}-H{H}-P{P}-N{N}-G{G}-L{L}-{options}"


def run(inputs: dict[str, torch.Tensor], chunk_size: int, dtype: torch.dtype) -> None:
    y, state = ssd(**inputs, return_final_state=True, chunk_size=chunk_size, backend="triton")
    assert y.dtype == dtype and state.dtype == torch.float32
    ref_inputs = as_reference_inputs(inputs)
    ref_y, ref_state = ssd_recurrent(**ref_inputs)
    compare_with_reference(
        (y, state), (ref_y, ref_state), ("y", "final_state"), inputs, ref_inputs, tolerance(dtype)
    )


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_ssd_triton(case: tuple) -> None:
    (*dims, chunk_size), options = case
    run(ssd_inputs(*dims, options), chunk_size, torch.float32)


@pytest.mark.parametrize("case", [CASES[4], CASES[7]], ids=case_id)
def test_ssd_triton_bf16(case: tuple) -> None:
    (*dims, chunk_size), options = case
    run(ssd_inputs(*dims, options, dtype=torch.bfloat16), chunk_size, torch.bfloat16)


def test_ssd_triton_split_sequence() -> None:
    """The second half started from the first half's final state continues the whole sequence."""
    inputs = {name: t.detach() for name, t in ssd_inputs(2, 37, 4, 8, 8, 2, "D-z-state").items()}
    per_token = ("x", "dt", "B", "C", "z")

    def part(t: slice) -> dict[str, torch.Tensor]:
        return {k: v[:, t] if k in per_token else v for k, v in inputs.items() if k != "initial_state"}

    y, state = ssd(**inputs, return_final_state=True, chunk_size=16, backend="triton")
    y1, state1 = ssd(**part(slice(None, 20)), initial_state=inputs["initial_state"], return_final_state=True,
                     chunk_size=16, backend="triton")
    y2, state2 = ssd(**part(slice(20, None)), initial_state=state1, return_final_state=True, chunk_size=16,
                     backend="triton")
    assert_close("y", torch.cat([y1, y2], dim=1), y, 1e-4)
    assert_close("final_state", state2, state, 1e-4)


def test_ssd_triton_is_the_default_only_on_cuda() -> None:
    inputs = {name: t.detach() for name, t in ssd_inputs(1, 5, 2, 8, 4, 1, "plain").items()}
    assert torch.equal(ssd(**inputs), ssd(**inputs, backend="reference"))  # CPU tensors: the reference
    assert_close("y", ssd(**inputs, backend="triton"), ssd(**inputs), 1e-4)


def test_ssd_triton_refuses_other_dtypes() -> None:
    inputs = {name: t.detach() for name, t in ssd_inputs(1, 5, 2, 8, 4, 1, "D").items()}
    inputs["D"] = inputs["D"].double()
    message = r"ssd: backend='triton' takes float32 or bfloat16 tensors, but D is torch.float64; cast it, or use"
    with pytest.raises(TypeError, match=message):
        ssd(**inputs, backend="triton")
    ssd(**inputs, backend="reference")  # the reference computes in whatever floating dtype it is given


def test_ssd_triton_strided_inputs() -> None:
    """Views with gaps and permuted strides give exactly what their contiguous copies give."""
    inputs = {name: t.detach() for name, t in ssd_inputs(2, 37, 4, 8, 8, 2, "D-z-state").items()}
    strided = {name: strided_view(t) for name, t in inputs.items()}
    assert not any(t.is_contiguous() for t in strided.values())
    y, state = ssd(**strided, return_final_state=True, chunk_size=16, backend="triton")
    ref_y, ref_state = ssd(**inputs, return_final_state=True, chunk_size=16, backend="triton")
    assert torch.equal(y, ref_y) and torch.equal(state, ref_state)


def test_ssd_triton_reads_slices_of_the_conv_output_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """x, B and C cut from one [B, T, width] tensor, as Mamba-2 hands them over, are read where they lie (no copy),
    and give what their contiguous copies give, gradients included (each written contiguous)."""
    import kernels.ssd.triton as ssd_triton

    b, T, H, P, N, G = 2, 37, 4, 8, 6, 2
    xbc = torch.randn(b, T, H * P + 2 * G * N + 3, requires_grad=True)
    x, B, C, _ = xbc.split([H * P, G * N, G * N, 3], dim=-1)
    views = {"x": x.view(b, T, H, P), "B": B.view(b, T, G, N), "C": C.view(b, T, G, N)}
    rest = {"dt": torch.rand(b, T, H), "A": -torch.rand(H), "D": torch.randn(H)}
    copies = []
    rows = ssd_triton._sequence_rows
    monkeypatch.setattr(ssd_triton, "_sequence_rows", lambda t: r if (r := rows(t)) is t else copies.append(t) or r)
    y = ssd(**views, **rest, chunk_size=16, backend="triton")
    assert copies == []
    leaf = xbc.detach().clone().requires_grad_()
    xc, Bc, Cc, _ = leaf.split([H * P, G * N, G * N, 3], dim=-1)
    ref = ssd(xc.reshape(b, T, H, P).contiguous(), rest["dt"], rest["A"], Bc.reshape(b, T, G, N).contiguous(),
              Cc.reshape(b, T, G, N).contiguous(), D=rest["D"], chunk_size=16, backend="triton")
    assert torch.equal(y, ref)
    torch.manual_seed(0)
    ref_grads = torch.autograd.grad(ref, (leaf,), torch.randn_like(ref))[0]
    torch.manual_seed(0)
    grads = torch.autograd.grad(ssd(**views, **rest, chunk_size=16, backend="triton"), (xbc,),
                                torch.randn_like(ref))[0]
    assert torch.equal(grads, ref_grads)


@pytest.mark.parametrize("options", ["plain", "D-z-state"])
def test_ssd_triton_compiles_whole(options: str) -> None:
    """The Triton path is a PyTorch operator with its autograd and shapes registered: torch.compile traces
    around it with no graph break, and the compiled gradients are the eager ones."""
    def call(**args):
        return ssd(**args, return_final_state=True, chunk_size=16, backend="triton")

    assert_compiles_whole(call, ssd_inputs(2, 37, 4, 16, 8, 2, options))


def test_ssd_ops_pass_opcheck() -> None:
    """torch.library.opcheck: the operators' schemas, fake (shape and stride) functions and autograd
    registration agree with what they do, the backward's too."""
    from kernels.ssd.triton import ssd_bwd_op, ssd_fwd_op

    t = {n: v.detach() for n, v in ssd_inputs(1, 20, 2, 8, 8, 1, "D-z-state").items()}
    args = (t["x"], t["dt"], t["A"], t["B"], t["C"], t["D"], t["z"], t["initial_state"], 16)
    with torch.no_grad():
        y, final, g, states, cb = ssd_fwd_op(*args)
    for D, z in ((t["D"], t["z"]), (None, None)):
        torch.library.opcheck(ssd_bwd_op, (torch.randn_like(y), torch.randn_like(final), *args[:5], D, z, g, states,
                                           cb, 16), test_utils=("test_schema", "test_faketensor"))
    for a in args[:8]:
        a.requires_grad_(True)
    torch.library.opcheck(ssd_fwd_op, args, test_utils=("test_schema", "test_autograd_registration",
                                                         "test_faketensor", "test_aot_dispatch_dynamic"))


STEP_CASES = [  # (B, H, P, N, G), options
    *(((2, 4, 16, 8, 2), options) for options in ("plain", "D", "z", "D-z-state")),
    ((3, 4, 12, 6, 1), "D-z-state"),  # P and N no powers of two
    ((1, 2, 48, 80, 1), "D-z-state"),  # N over one tile of rows: several row blocks of P
]


def step_inputs(B: int, H: int, P: int, N: int, G: int, options: str, dtype=torch.float32) -> dict:
    """One token of `ssd_inputs`, with a state (zeros unless the options carry one)."""
    inputs = {k: v.detach() for k, v in ssd_inputs(B, 1, H, P, N, G, options, dtype).items()}
    state = inputs.pop("initial_state", torch.zeros(B, H, P, N)).float()
    return {k: v[:, 0] if k in ("x", "dt", "B", "C", "z") else v for k, v in inputs.items()} | {"state": state}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("case", STEP_CASES, ids=lambda c: "B{}-H{}-P{}-N{}-G{}-".format(*c[0]) + c[1])
def test_ssd_step_triton(case: tuple, dtype: torch.dtype) -> None:
    """The one-kernel step equals the reference step (in fp64), in place and not, and leaves the given state
    alone unless told to advance it."""
    inputs = step_inputs(*case[0], case[1], dtype)
    ref_y, ref_state = ssd_step(**{k: v.double() for k, v in inputs.items()}, backend="reference")
    before = inputs["state"].clone()
    y, state = ssd_step(**inputs, backend="triton")
    assert y.dtype == dtype and state.dtype == torch.float32 and torch.equal(inputs["state"], before)
    assert_close("y", y, ref_y, tolerance(dtype))
    assert_close("state", state, ref_state, 1e-5)
    y2, state2 = ssd_step(**inputs, inplace=True, backend="triton")
    assert state2 is inputs["state"] and torch.equal(state2, state) and torch.equal(y2, y)


def test_ssd_step_triton_reads_slices_of_one_projection() -> None:
    """x, B, C and z cut from one [B, width] projection (loose batch stride) give what contiguous copies give."""
    b, H, P, N, G = 3, 4, 8, 6, 2
    proj = torch.randn(b, 2 * H * P + 2 * G * N + 5)
    x, z, B, C, _ = proj.split([H * P, H * P, G * N, G * N, 5], dim=-1)
    views = {"x": x.view(b, H, P), "z": z.view(b, H, P), "B": B.view(b, G, N), "C": C.view(b, G, N)}
    assert not any(v.is_contiguous() for v in views.values())
    rest = {"dt": torch.rand(b, H), "A": -torch.rand(H), "D": torch.randn(H), "state": torch.randn(b, H, P, N)}
    y, state = ssd_step(**views, **rest, backend="triton")
    ref_y, ref_state = ssd_step(**{k: v.contiguous() for k, v in views.items()}, **rest, backend="triton")
    assert torch.equal(y, ref_y) and torch.equal(state, ref_state)


def test_ssd_step_inplace_refuses_a_state_it_cannot_keep() -> None:
    inputs = step_inputs(2, 4, 8, 8, 2, "D-state")
    for bad, what in ((inputs["state"].bfloat16(), "torch.bfloat16"), (inputs["state"].transpose(2, 3), "False")):
        with pytest.raises(ValueError, match=rf"ssd_step: inplace=True keeps the state as it lies.*{what}"):
            ssd_step(**(inputs | {"state": bad}), inplace=True, backend="triton")
    with pytest.raises(ValueError, match="ssd_step: inplace=True needs a state"):
        ssd_step(**(inputs | {"state": None}), inplace=True)


def test_ssd_step_compiles_whole() -> None:
    """The in-place step is an operator that mutates its state: a compiled decode step traces it whole and
    advances the state as the eager one does."""
    inputs = step_inputs(2, 4, 16, 8, 2, "D-z-state")

    def step(x, dt, A, B, C, D, z, state):
        y, _ = ssd_step(x, dt, A, B, C, state, D=D, z=z, inplace=True, backend="triton")
        return y * 2

    eager_state, compiled_state = inputs["state"].clone(), inputs["state"].clone()
    args = [inputs[k] for k in ("x", "dt", "A", "B", "C", "D", "z")]
    y = step(*args, eager_state)
    torch._dynamo.reset()
    y_c = torch.compile(step, fullgraph=True, backend="aot_eager")(*args, compiled_state)
    assert_close("y", y_c, y, 1e-6)
    assert_close("state", compiled_state, eager_state, 1e-6)
    assert not torch.equal(compiled_state, inputs["state"])


def test_ssd_step_op_passes_opcheck() -> None:
    from kernels.ssd.triton import ssd_step_op

    t = step_inputs(2, 4, 8, 8, 2, "D-z-state")
    args = (t["x"], t["dt"], t["A"], t["B"], t["C"], t["D"], t["z"], t["state"])
    torch.library.opcheck(ssd_step_op, args, test_utils=("test_schema", "test_faketensor"))
