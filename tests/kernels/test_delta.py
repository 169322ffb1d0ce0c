"""The gated delta rule: the chunked (WY) form against the token-by-token recurrence, outputs and every gradient."""

from __future__ import annotations

import pytest
import torch
from kernel_inputs import delta_inputs

from kernels.delta import gated_delta, gated_delta_step
from kernels.delta.reference import gated_delta_recurrent
from kernels.testing import assert_close

SHAPES = [  # B, T, H, K, V, chunk_size
    (2, 1, 2, 12, 10, 64),
    (2, 2, 2, 12, 10, 64),
    (2, 37, 3, 12, 10, 16),  # K and V below 16 and no powers of two
    (1, 64, 2, 8, 8, 16),  # exactly four chunks
    (1, 65, 2, 20, 6, 64),
    (1, 257, 2, 16, 24, 64),
]
GATES = ["head", "channel"]
PER_TOKEN = ("q", "k", "v", "g", "beta")


def shape_id(shape: tuple[int, ...]) -> str:
    return "B{}-T{}-H{}-K{}-V{}-L{}".format(*shape)


def split(inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    return {n: t for n, t in inputs.items() if n in PER_TOKEN}, inputs.get("initial_state")


def time_slice(inputs: dict[str, torch.Tensor], t: slice | int) -> dict[str, torch.Tensor]:
    return {name: x[:, t] for name, x in inputs.items() if name in PER_TOKEN}


def options(gate: str, with_state: bool) -> str:
    return "-".join(([gate] if gate == "channel" else []) + (["state"] if with_state else [])) or "plain"


def check_against_recurrence(inputs: dict[str, torch.Tensor], chunk_size: int, tol: float) -> None:
    args, state0 = split(inputs)
    K = args["q"].shape[-1]
    o, state = gated_delta(**args, initial_state=state0, return_final_state=True, chunk_size=chunk_size)
    ref_o, ref_state = gated_delta_recurrent(**args, initial_state=state0, scale=K**-0.5)
    assert_close("o", o, ref_o, tol)
    assert_close("final_state", state, ref_state, tol)
    cotangents = (torch.randn_like(o), torch.randn_like(state))
    grads = torch.autograd.grad((o, state), list(inputs.values()), cotangents)
    ref_grads = torch.autograd.grad((ref_o, ref_state), list(inputs.values()), cotangents)
    for name, grad, ref_grad in zip(inputs, grads, ref_grads):
        assert_close(f"d{name}", grad, ref_grad, tol)


@pytest.mark.parametrize("with_state", [False, True], ids=["empty", "state"])
@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_gated_delta(shape: tuple[int, ...], gate: str, with_state: bool) -> None:
    *dims, chunk_size = shape
    check_against_recurrence(delta_inputs(*dims, options(gate, with_state)), chunk_size, 1e-4)


@pytest.mark.parametrize("gate", GATES)
def test_gated_delta_fp64(gate: str) -> None:
    """fp64 inputs are computed in fp64 throughout (the GPU tests' ground truth): agreement to 1e-10."""
    inputs = delta_inputs(2, 65, 2, 12, 10, options(gate, True), dtype=torch.float64)
    inputs["initial_state"] = inputs["initial_state"].detach().double().requires_grad_()
    o, state = gated_delta(**split(inputs)[0], initial_state=inputs["initial_state"], return_final_state=True)
    assert o.dtype == state.dtype == torch.float64
    check_against_recurrence(inputs, 16, 1e-10)


@pytest.mark.parametrize("gate", GATES)
def test_gated_delta_strong_decay(gate: str) -> None:
    """Tokens that decay by e^-60 and e^-30 in one step (past what e^b · e^-b survives in fp32): still exact."""
    check_against_recurrence(delta_inputs(2, 37, 2, 12, 10, options(gate, True) + "-strong"), 16, 1e-4)


@pytest.mark.parametrize("gate", GATES)
def test_gated_delta_bf16(gate: str) -> None:
    inputs = delta_inputs(2, 37, 3, 12, 10, options(gate, True), dtype=torch.bfloat16)
    args, state0 = split(inputs)
    o, state = gated_delta(**args, initial_state=state0, return_final_state=True, chunk_size=16)
    assert o.dtype == torch.bfloat16 and state.dtype == torch.float32
    fp32 = {name: t.float() for name, t in args.items()}
    ref_o, ref_state = gated_delta_recurrent(**fp32, initial_state=state0, scale=12**-0.5)
    assert_close("o", o, ref_o, 2e-2)
    assert_close("final_state", state, ref_state, 2e-2)


@pytest.mark.parametrize("gate", GATES)
def test_gated_delta_split_sequence(gate: str) -> None:
    """The second half started from the first half's final state continues the whole sequence."""
    args, _ = split(delta_inputs(2, 37, 2, 12, 10, options(gate, False)))
    o, state = gated_delta(**args, return_final_state=True, chunk_size=16)
    first, second = time_slice(args, slice(None, 20)), time_slice(args, slice(20, None))
    o1, state1 = gated_delta(**first, return_final_state=True, chunk_size=16)
    o2, state2 = gated_delta(**second, initial_state=state1, return_final_state=True)
    assert_close("o", torch.cat([o1, o2], dim=1), o, 1e-4)
    assert_close("final_state", state2, state, 1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("with_state", [False, True], ids=["empty", "state"])
@pytest.mark.parametrize("gate", GATES)
def test_gated_delta_step(gate: str, with_state: bool, dtype: torch.dtype) -> None:
    """Decoding token by token from the initial state reproduces the parallel output and final state."""
    inputs = delta_inputs(2, 37, 2, 12, 10, options(gate, with_state), dtype=dtype)
    args, state0 = split(inputs)
    o, state = gated_delta(**args, initial_state=state0, return_final_state=True, chunk_size=16)
    step_state, outs = state0, []
    for t in range(37):
        o_t, step_state = gated_delta_step(**time_slice(args, t), state=step_state)
        outs.append(o_t)
    assert outs[0].dtype == dtype and step_state.dtype == torch.float32
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    assert_close("o", torch.stack(outs, dim=1), o, tol)
    assert_close("final_state", step_state, state, tol)


@pytest.mark.parametrize("gate", GATES)
def test_gated_delta_recurrence_by_hand(gate: str) -> None:
    """The rule as written, with explicit matrices, so that a mistake shared by every form fails:
    S_t = (I − β_t k_t k_tᵀ) diag(exp g_t) S_{t−1} + β_t k_t v_tᵀ, o_t = S_tᵀ q_t / √K."""
    inputs = delta_inputs(1, 6, 2, 4, 3, options(gate, True))
    args, state0 = split(inputs)
    o = gated_delta(**args, initial_state=state0)
    q, k, v, g, beta = (t.detach().double()[0] for t in args.values())  # [T, H, ...]
    S = state0.detach().double()[0]  # [H, K, V]
    eye = torch.eye(4, dtype=torch.double)
    for t in range(6):
        for h in range(2):
            decay = torch.diag(torch.exp(g[t, h].expand(4)))
            kt = k[t, h][:, None]  # [K, 1]
            S[h] = (eye - beta[t, h] * kt @ kt.T) @ decay @ S[h] + beta[t, h] * kt @ v[t, h][None, :]
            assert_close(f"o[{t}, {h}]", o[0, t, h], S[h].T @ q[t, h] / 2, 1e-5)


def test_gated_delta_scale() -> None:
    args, _ = split(delta_inputs(1, 9, 2, 12, 10, "plain"))
    assert_close("o", gated_delta(**args, scale=1.0), gated_delta(**args) * 12**0.5, 1e-6)


BAD_INPUTS = [  # name, replacement, message
    ("T", lambda i: {"q": i["q"][:, :0]}, r"gated_delta: q must hold at least one token"),
    ("q", lambda i: {"q": i["q"][0]}, r"gated_delta: q must have shape \[B, T, H, K\], got \[5, 2, 8\]"),
    (
        "k",
        lambda i: {"k": i["k"][..., :-1]},
        r"gated_delta: k must have shape \[B=2, T=5, H=2, K=8\], got \[2, 5, 2, 7\]",
    ),
    (
        "v",
        lambda i: {"v": i["v"][:, 1:]},
        r"gated_delta: v must have shape \[B=2, T=5, H=2, V\], got \[2, 4, 2, 16\]",
    ),
    (
        "g",
        lambda i: {"g": i["g"][..., None, None]},
        r"gated_delta: g must have shape \[B=2, T=5, H=2\] \(a decay per head\) or \[B=2, T=5, H=2, K=8\] "
        r"\(a decay per key channel\), got \[2, 5, 2, 1, 1\]",
    ),
    (
        "g channel",
        lambda i: {"g": torch.zeros(2, 5, 2, 3)},
        r"gated_delta: g must have shape \[B=2, T=5, H=2, K=8\], got \[2, 5, 2, 3\]",
    ),
    ("beta", lambda i: {"beta": i["beta"][:, :, 0]}, r"gated_delta: beta must have shape \[B=2, T=5, H=2\]"),
    (
        "initial_state",
        lambda i: {"initial_state": torch.zeros(2, 2, 16, 8)},
        r"gated_delta: initial_state must have shape \[B=2, H=2, K=8, V=16\], got \[2, 2, 16, 8\]",
    ),
    ("chunk_size", lambda i: {"chunk_size": 0}, r"gated_delta: chunk_size must be a positive integer, got 0"),
    (
        "device",
        lambda i: {"v": i["v"].to("meta")},
        r"gated_delta: v is on meta but q is on cpu; put every input on one device",
    ),
    (
        "empty",
        lambda i: {name: t[:, :, :0] for name, t in i.items()},
        r"gated_delta: q must have no empty dimension, got \[2, 5, 0, 8\]",
    ),
]


@pytest.mark.parametrize("name, replacement, message", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_gated_delta_rejects_bad_inputs(name: str, replacement, message: str) -> None:
    inputs = {name: t.detach() for name, t in delta_inputs(2, 5, 2, 8, 16, "plain").items()}
    with pytest.raises(ValueError, match=message):
        gated_delta(**{**inputs, **replacement(inputs)})


def test_gated_delta_refuses_other_types() -> None:
    inputs = {name: t.detach() for name, t in delta_inputs(2, 5, 2, 8, 16, "plain").items()}
    with pytest.raises(TypeError, match=r"gated_delta: beta must be a floating-point tensor, got torch.int64"):
        gated_delta(**{**inputs, "beta": inputs["beta"].long()})
    with pytest.raises(TypeError, match=r"gated_delta: scale must be a number, got str"):
        gated_delta(**inputs, scale="0.5")


def test_gated_delta_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    args, _ = split(delta_inputs(2, 5, 2, 8, 16, "plain"))
    assert torch.equal(gated_delta(**args, backend="reference"), gated_delta(**args))
    with pytest.raises(ValueError, match=r"gated_delta: unknown backend 'cuda'"):
        gated_delta(**args, backend="cuda")
    # CPU tensors run the Triton kernels only under the interpreter (tests/kernels/triton sets it)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=r"gated_delta: backend='triton'"):
        gated_delta(**args, backend="triton")
