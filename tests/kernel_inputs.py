"""Inputs of the recurrent ops for the kernel tests (interpreter and GPU), and the comparison of a run with
its reference."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.testing import assert_close

FP32_TOL, BF16_TOL = 1e-3, 2e-2


def tolerance(dtype: torch.dtype) -> float:
    return FP32_TOL if dtype == torch.float32 else BF16_TOL


def leaves(inputs: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The inputs in `dtype` (states stay fp32), each a leaf that wants its gradient."""
    return {
        name: (t if name.startswith("initial_state") or name in ("C0", "n0", "m0") else t.to(dtype))
        .detach()
        .requires_grad_()
        for name, t in inputs.items()
    }


def ssd_inputs(B: int, T: int, H: int, P: int, N: int, G: int, options: str, dtype=torch.float32):
    parts = options.split("-")
    inputs = {
        "x": torch.randn(B, T, H, P),
        "dt": F.softplus(torch.randn(B, T, H) - 1),
        "A": -torch.exp(torch.rand(H)),
        "B": torch.randn(B, T, G, N),
        "C": torch.randn(B, T, G, N),
    }
    if "D" in parts:
        inputs["D"] = torch.randn(H)
    if "z" in parts:
        inputs["z"] = torch.randn(B, T, H, P)
    if "state" in parts:
        inputs["initial_state"] = torch.randn(B, H, P, N)
    return leaves(inputs, dtype)


def selective_scan_inputs(B: int, T: int, Dc: int, N: int, G: int | None, options: str, dtype=torch.float32):
    parts = options.split("-")
    groups = () if G is None else (G,)
    inputs = {
        "u": torch.randn(B, T, Dc),
        "delta": F.softplus(torch.randn(B, T, Dc) - 1),
        "A": -torch.exp(torch.rand(Dc, N)),
        "B": torch.randn(B, T, *groups, N),
        "C": torch.randn(B, T, *groups, N),
    }
    if "D" in parts:
        inputs["D"] = torch.randn(Dc)
    if "z" in parts:
        inputs["z"] = torch.randn(B, T, Dc)
    if "state" in parts:
        inputs["initial_state"] = torch.randn(B, Dc, N)
    return leaves(inputs, dtype)


def mlstm_inputs(B: int, T: int, H: int, K: int, V: int, options: str, dtype=torch.float32):
    inputs = {
        "q": torch.randn(B, T, H, K),
        "k": torch.randn(B, T, H, K),
        "v": torch.randn(B, T, H, V),
        "i": torch.randn(B, T, H),
        "f": torch.randn(B, T, H) + 3,  # forget gates mostly open, as after the usual bias init
    }
    if "state" in options.split("-"):  # as after a prefix: C and n sums of writes, m of recent input gates
        inputs.update(C0=torch.randn(B, H, K, V) * 2, n0=torch.randn(B, H, K) * 2, m0=torch.randn(B, H))
    return leaves(inputs, dtype)


def delta_inputs(B: int, T: int, H: int, K: int, V: int, options: str, dtype=torch.float32):
    """Gated delta rule inputs as a layer makes them: q and k L2-normalised, g = logσ(·) ≤ 0 (mostly near
    0, as after the usual init), β = σ(·). Options: `channel` (g per key channel, KDA), `state` (an initial
    state), `strong` (some tokens decay by e^-60 and e^-30 at once, past what e^b·e^-b survives in fp32)."""
    parts = options.split("-")
    gate = (B, T, H, K) if "channel" in parts else (B, T, H)
    inputs = {
        "q": F.normalize(torch.randn(B, T, H, K), dim=-1),
        "k": F.normalize(torch.randn(B, T, H, K), dim=-1),
        "v": torch.randn(B, T, H, V),
        "g": F.logsigmoid(torch.randn(gate) + 3),
        "beta": torch.sigmoid(torch.randn(B, T, H)),
    }
    if "strong" in parts:
        inputs["g"][:, 5:9] -= 60.0
        inputs["g"][:, 20::7] -= 30.0
    if "state" in parts:
        inputs["initial_state"] = torch.randn(B, H, K, V)
    return leaves(inputs, dtype)


def compare_with_reference(
    outputs: tuple[torch.Tensor, ...],
    ref_outputs: tuple[torch.Tensor, ...],
    names: tuple[str, ...],
    inputs: dict[str, torch.Tensor],
    ref_inputs: dict[str, torch.Tensor],
    tol: float,
) -> None:
    """Outputs, then the gradient of every input under the same random cotangents."""
    for name, out, ref in zip(names, outputs, ref_outputs):
        assert_close(name, out, ref, tol)
    cotangents = [torch.randn_like(out) for out in outputs]
    grads = torch.autograd.grad(outputs, list(inputs.values()), cotangents)
    ref_grads = torch.autograd.grad(ref_outputs, list(ref_inputs.values()), [c.float() for c in cotangents])
    for name, grad, ref_grad in zip(inputs, grads, ref_grads):
        assert grad.dtype == inputs[name].dtype, f"d{name}: dtype {grad.dtype} != {inputs[name].dtype}"
        assert_close(f"d{name}", grad, ref_grad, tol)


def strided_view(t: torch.Tensor) -> torch.Tensor:
    """The values of `t` in a view with gaps between its elements and (past 1-D) the strides of its first
    two dimensions swapped: an input a kernel must not read as if it were contiguous."""
    shape = list(t.shape)
    if t.ndim > 1:
        shape[0], shape[1] = shape[1], shape[0]
    view = torch.zeros(*shape[:-1], 2 * shape[-1], dtype=t.dtype)[..., ::2]
    if t.ndim > 1:
        view = view.transpose(0, 1)
    return view.copy_(t)


def as_reference_inputs(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp32 leaves holding the same values, for the reference run."""
    return {name: t.detach().float().requires_grad_() for name, t in inputs.items()}


def assert_compiles_whole(call, inputs: dict[str, torch.Tensor]) -> None:
    """`call(**inputs)` -> (output, final state or a tuple of them), under torch.compile(fullgraph=True) — no
    graph break around the kernels — gives the eager gradients bit for bit (aot_eager: the operators'
    registered autograd and shapes are what is traced)."""
    names = list(inputs)

    def f(*tensors):
        out, state = call(**dict(zip(names, tensors)))
        states = state if isinstance(state, tuple) else (state,)
        return out.float().square().sum() + sum(s.square().sum() for s in states)

    args = tuple(inputs.values())
    eager = torch.autograd.grad(f(*args), args)
    torch._dynamo.reset()
    got = torch.autograd.grad(torch.compile(f, fullgraph=True, backend="aot_eager")(*args), args)
    for name, a, b in zip(names, eager, got, strict=True):
        assert torch.equal(a, b), name


def conv1d_inputs(B: int, T: int, C: int, W: int, options: str, dtype=torch.float32):
    """Causal conv1d inputs: options `bias`, `state` (the W-1 inputs before x)."""
    parts = options.split("-")
    inputs = {"x": torch.randn(B, T, C), "weight": torch.randn(C, W) / W}
    if "bias" in parts:
        inputs["bias"] = torch.randn(C)
    if "state" in parts:
        inputs["initial_state"] = torch.randn(B, W - 1, C)
    return leaves(inputs, dtype)
