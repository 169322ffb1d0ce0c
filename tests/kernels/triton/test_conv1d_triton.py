"""Causal conv1d (+ SiLU), Triton kernels under the interpreter: output and every gradient, strided inputs,
operator registration and whole-graph compilation."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")

from kernel_inputs import (
    as_reference_inputs,
    assert_compiles_whole,
    compare_with_reference,
    conv1d_inputs,
    tolerance,
)

from kernels.conv1d import causal_conv1d
from kernels.conv1d.triton import causal_conv1d_bwd_op, causal_conv1d_fwd_op

CASES = [  # (B, T, C, W), options
    *(((2, T, 24, 4), options) for T in (1, 2, 37) for options in ("plain", "bias-state")),
    ((1, 50, 40, 4), "bias"),  # several blocks of tokens and of channels, the last ones partial
    ((2, 9, 8, 2), "bias-state"),  # a narrower kernel
    ((1, 40, 24, 3), "bias-state"),  # an odd width, LFM2's short conv; several parts of dw
    ((1, 7, 5, 1), "bias"),  # W = 1: no state at all
]


def case_id(case: tuple) -> str:
    (B, T, C, W), options = case
    return f"B{B}-T{T}-C{C}-W{W}-{options}"


def run(inputs: dict[str, torch.Tensor], activation: str | None, dtype: torch.dtype) -> None:
    # the state takes no gradient on the Triton path (the public function sends a state that wants one to the
    # reference), so it is a constant here
    if "initial_state" in inputs:
        inputs["initial_state"] = inputs["initial_state"].detach()
    leaves = {k: v for k, v in inputs.items() if v.requires_grad}
    y = causal_conv1d(**inputs, activation=activation, backend="triton")
    assert y.dtype == dtype and y.shape == inputs["x"].shape
    ref_all = as_reference_inputs(inputs)
    ref_y = causal_conv1d(**ref_all, activation=activation, backend="reference")
    compare_with_reference((y,), (ref_y,), ("y",), leaves, {k: ref_all[k] for k in leaves}, tolerance(dtype))


@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_conv1d_triton(case: tuple, activation: str | None) -> None:
    torch.manual_seed(0)
    dims, options = case
    run(conv1d_inputs(*dims, options), activation, torch.float32)


@pytest.mark.parametrize("case", [CASES[5], CASES[6], CASES[8]], ids=case_id)
def test_conv1d_triton_bf16(case: tuple) -> None:
    torch.manual_seed(0)
    dims, options = case
    run(conv1d_inputs(*dims, options, dtype=torch.bfloat16), "silu", torch.bfloat16)


def test_a_slice_of_a_projection_is_read_through_its_strides() -> None:
    """x as Mamba gives it: the middle columns of a wider tensor, read in place, not copied."""
    torch.manual_seed(0)
    wide = torch.randn(2, 37, 60, requires_grad=True)
    x = wide[..., 10:34]
    weight = (torch.randn(24, 4) / 4).requires_grad_()
    y = causal_conv1d(x, weight, activation="silu", backend="triton")
    ref_wide = wide.detach().clone().requires_grad_()
    ref = causal_conv1d(ref_wide[..., 10:34], weight, activation="silu", backend="reference")
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(y)
    (dwide,) = torch.autograd.grad(y, wide, g)
    (ref_dwide,) = torch.autograd.grad(ref, ref_wide, g)
    torch.testing.assert_close(dwide, ref_dwide, atol=1e-5, rtol=1e-5)


def test_a_state_that_wants_a_gradient_gets_it() -> None:
    torch.manual_seed(0)
    inputs = conv1d_inputs(2, 9, 8, 4, "bias-state")
    y = causal_conv1d(**inputs, activation="silu", backend="triton")
    (dstate,) = torch.autograd.grad(y.sum(), inputs["initial_state"])
    ref = as_reference_inputs(inputs)
    (ref_dstate,) = torch.autograd.grad(
        causal_conv1d(**ref, activation="silu", backend="reference").sum(), ref["initial_state"])
    torch.testing.assert_close(dstate, ref_dstate)


def test_one_token_runs_on_plain_ops_unless_triton_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decode step's single token skips the tiled kernel when the backend is picked for it (the plain ops fuse
    into a compiled step); a longer input, or backend="triton" by name, runs the kernel."""
    import kernels.conv1d.triton as conv_triton

    calls = []
    kernel = conv_triton.causal_conv1d_triton
    monkeypatch.setattr(conv_triton, "causal_conv1d_triton", lambda *a: calls.append(a[0].shape[1]) or kernel(*a))
    monkeypatch.setenv("KERNELS_BACKEND", "triton")  # what a CUDA tensor gets with backend=None
    for T, backend in ((1, None), (3, None), (1, "triton")):
        inputs = {k: v.detach() for k, v in conv1d_inputs(2, T, 24, 4, "bias-state").items()}
        y = causal_conv1d(**inputs, activation="silu", backend=backend)
        ref = causal_conv1d(**as_reference_inputs(inputs), activation="silu", backend="reference")
        torch.testing.assert_close(y.double(), ref.double(), atol=1e-5, rtol=1e-5)
    assert calls == [3, 1]


def test_a_width_above_the_kernels_runs_on_plain_ops_unless_triton_is_named(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernels unroll at most MAX_W taps: a wider convolution picks the reference, and asking for the Triton
    kernels by name says what to do instead."""
    from kernels.conv1d.triton import MAX_W

    torch.manual_seed(0)
    inputs = {k: v.detach() for k, v in conv1d_inputs(2, 9, 8, MAX_W + 1, "bias").items()}
    monkeypatch.setenv("KERNELS_BACKEND", "triton")  # what a CUDA tensor gets with backend=None
    y = causal_conv1d(**inputs, activation="silu")
    torch.testing.assert_close(y, causal_conv1d(**inputs, activation="silu", backend="reference"))
    with pytest.raises(ValueError, match=rf"take widths up to {MAX_W}, not {MAX_W + 1}; use backend='reference'"):
        causal_conv1d(**inputs, activation="silu", backend="triton")


def test_the_operators_pass_opcheck() -> None:
    torch.manual_seed(0)
    inputs = conv1d_inputs(2, 37, 24, 4, "bias-state")
    x, w, b, s = (inputs[k].detach() for k in ("x", "weight", "bias", "initial_state"))
    torch.library.opcheck(causal_conv1d_fwd_op, (x.requires_grad_(), w.requires_grad_(), b.requires_grad_(), s, True))
    torch.library.opcheck(causal_conv1d_bwd_op, (torch.randn_like(x), x.detach(), w.detach(), b.detach(), s, True))
    torch.library.opcheck(causal_conv1d_fwd_op, (x.detach(), w.detach(), None, None, False))


def test_compiles_whole() -> None:
    """No graph break around the kernels, and the compiled gradients are the eager ones bit for bit."""
    torch.manual_seed(0)
    assert_compiles_whole(lambda **kw: (causal_conv1d(**kw, activation="silu", backend="triton"), ()),
                          conv1d_inputs(2, 37, 24, 4, "bias"))

