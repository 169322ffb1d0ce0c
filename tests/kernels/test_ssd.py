"""Mamba-2 SSD: the chunked form against the token-by-token recurrence, outputs and every gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels.ssd import ssd, ssd_step
from kernels.ssd.reference import ssd_recurrent
from kernels.testing import assert_close

SHAPES = [  # B, T, H, P, N, G, chunk_size
    (2, 1, 4, 8, 8, 2, 64),
    (2, 37, 4, 16, 8, 2, 16),
    (1, 64, 2, 8, 4, 1, 16),  # exactly four chunks
    (1, 257, 4, 8, 8, 4, 64),
]
OPTIONS = ["plain", "D", "z", "state", "D-z-state"]
PER_TOKEN = ("x", "dt", "B", "C", "z")
ARGUMENTS = (*PER_TOKEN, "A", "D")


def shape_id(shape: tuple[int, ...]) -> str:
    return "B{}-T{}-H{}-P{}-N{}-G{}-L{}".format(*shape)


def make_inputs(
    B: int, T: int, H: int, P: int, N: int, G: int, options: str = "D-z-state", dtype=torch.float32
) -> dict[str, torch.Tensor]:
    inputs = {
        "x": torch.randn(B, T, H, P, dtype=dtype),
        "dt": F.softplus(torch.randn(B, T, H) - 1).to(dtype),
        "A": -torch.exp(torch.rand(H)).to(dtype),
        "B": torch.randn(B, T, G, N, dtype=dtype),
        "C": torch.randn(B, T, G, N, dtype=dtype),
    }
    parts = options.split("-")
    if "D" in parts:
        inputs["D"] = torch.randn(H, dtype=dtype)
    if "z" in parts:
        inputs["z"] = torch.randn(B, T, H, P, dtype=dtype)
    if "state" in parts:
        inputs["initial_state"] = torch.randn(B, H, P, N)  # states are fp32 whatever the inputs
    return {name: t.requires_grad_() for name, t in inputs.items()}


def time_slice(inputs: dict[str, torch.Tensor], t: slice | int) -> dict[str, torch.Tensor]:
    """The per-token inputs at time(s) t, with the per-channel ones; without the initial state."""
    return {name: x[:, t] if name in PER_TOKEN else x for name, x in inputs.items() if name in ARGUMENTS}


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_ssd(shape: tuple[int, ...], options: str) -> None:
    *dims, chunk_size = shape
    inputs = make_inputs(*dims, options=options)
    y, state = ssd(**inputs, return_final_state=True, chunk_size=chunk_size)
    ref_y, ref_state = ssd_recurrent(**inputs)
    assert_close("y", y, ref_y, 1e-4)
    assert_close("final_state", state, ref_state, 1e-4)

    dy, dstate = torch.randn_like(y), torch.randn_like(state)
    grads = torch.autograd.grad((y, state), list(inputs.values()), (dy, dstate))
    ref_grads = torch.autograd.grad((ref_y, ref_state), list(inputs.values()), (dy, dstate))
    for name, grad, ref_grad in zip(inputs, grads, ref_grads):
        assert_close(f"d{name}", grad, ref_grad, 1e-4)


@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[3]], ids=shape_id)
def test_ssd_bf16(shape: tuple[int, ...]) -> None:
    *dims, chunk_size = shape
    inputs = make_inputs(*dims, dtype=torch.bfloat16)
    y, state = ssd(**inputs, return_final_state=True, chunk_size=chunk_size)
    assert y.dtype == torch.bfloat16 and state.dtype == torch.float32
    ref_y, ref_state = ssd_recurrent(**{name: t.float() for name, t in inputs.items()})
    assert_close("y", y, ref_y, 2e-2)
    assert_close("final_state", state, ref_state, 2e-2)


def test_ssd_split_sequence() -> None:
    """The second half started from the first half's final state continues the whole sequence."""
    inputs = make_inputs(2, 37, 4, 8, 8, 2)
    y, state = ssd(**inputs, return_final_state=True, chunk_size=16)
    y1, state1 = ssd(
        **time_slice(inputs, slice(None, 20)), initial_state=inputs["initial_state"], return_final_state=True
    )
    y2, state2 = ssd(**time_slice(inputs, slice(20, None)), initial_state=state1, return_final_state=True)
    assert_close("y", torch.cat([y1, y2], dim=1), y, 1e-4)
    assert_close("final_state", state2, state, 1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("options", ["plain", "D-z-state"])
def test_ssd_step(options: str, dtype: torch.dtype) -> None:
    """Decoding token by token from the initial state reproduces the parallel output and final state."""
    inputs = make_inputs(2, 37, 4, 8, 8, 2, options=options, dtype=dtype)
    y, state = ssd(**inputs, return_final_state=True, chunk_size=16)
    step_state, ys = inputs.get("initial_state"), []
    for t in range(37):
        y_t, step_state = ssd_step(**time_slice(inputs, t), state=step_state)
        ys.append(y_t)
    assert ys[0].dtype == dtype and step_state.dtype == torch.float32
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    assert_close("y", torch.stack(ys, dim=1), y, tol)
    assert_close("final_state", step_state, state, tol)


def test_ssd_recurrence_by_hand() -> None:
    """Two tokens written out, so that a mistake shared by every form (a wrong decay, group map) fails."""
    inputs = make_inputs(1, 2, 4, 3, 5, 2)
    y = ssd(**inputs)
    x, dt, A, B, C, D, z, h = (t.detach() for t in inputs.values())
    B, C = B[:, :, [0, 0, 1, 1]], C[:, :, [0, 0, 1, 1]]  # [1, T, H, N]: H=4 heads read G=2 groups
    for t in range(2):
        decay = torch.exp(dt[:, t] * A)[..., None, None]  # [1, H, 1, 1]
        write = (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]  # [1, H, P, N]
        h = decay * h + write
        y_t = (h * C[:, t, :, None, :]).sum(-1) + D[:, None] * x[:, t]  # [1, H, P]
        assert_close(f"y[{t}]", y[:, t], y_t * z[:, t] * torch.sigmoid(z[:, t]), 1e-5)


BAD_INPUTS = [  # name, replacement, message
    ("T", lambda i: {"x": i["x"][:, :0]}, r"ssd: x must hold at least one token \(T ≥ 1\), got T=0"),
    ("x", lambda i: {"x": i["x"][..., 0]}, r"ssd: x must have shape \[B, T, H, P\], got \[2, 5, 4\]"),
    ("dt", lambda i: {"dt": i["dt"][:, :-1]}, r"ssd: dt must have shape \[B=2, T=5, H=4\], got \[2, 4, 4\]"),
    ("A", lambda i: {"A": i["A"][None]}, r"ssd: A must have shape \[H=4\], got \[1, 4\]"),
    ("B", lambda i: {"B": i["B"][0]}, r"ssd: B must have shape \[B=2, T=5, G, N\], got \[5, 2, 8\]"),
    (
        "C",
        lambda i: {"C": i["C"][..., :-1]},
        r"ssd: C must have shape \[B=2, T=5, G=2, N=8\], got \[2, 5, 2, 7\]",
    ),
    ("D", lambda i: {"D": i["D"][:-1]}, r"ssd: D must have shape \[H=4\], got \[3\]"),
    ("z", lambda i: {"z": i["z"][..., :-1]}, r"ssd: z must have shape \[B=2, T=5, H=4, P=8\]"),
    (
        "initial_state",
        lambda i: {"initial_state": i["initial_state"][0]},
        r"ssd: initial_state must have shape \[B=2, H=4, P=8, N=8\]",
    ),
    (
        "groups",
        lambda i: {"B": torch.randn(2, 5, 3, 8), "C": torch.randn(2, 5, 3, 8)},
        r"ssd: the H=4 heads must split evenly into the G=3 groups of B and C",
    ),
]


@pytest.mark.parametrize("name, replacement, message", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_ssd_rejects_bad_inputs(name: str, replacement, message: str) -> None:
    inputs = make_inputs(2, 5, 4, 8, 8, 2)
    with pytest.raises(ValueError, match=message):
        ssd(**{**inputs, **replacement(inputs)})


REFUSALS = [  # name, replacement, error, message
    ("integer", lambda i: {"x": i["x"].long()}, TypeError, r"ssd: x must be a floating-point tensor, got torch.int64"),
    (
        "device",
        lambda i: {"C": i["C"].to("meta")},
        ValueError,
        r"ssd: C is on meta but x is on cpu; put every input on one device",
    ),
    (  # P = 0 throughout: the shapes agree, the size does not
        "empty",
        lambda i: {"x": i["x"][..., :0], "z": i["z"][..., :0], "initial_state": i["initial_state"][:, :, :0]},
        ValueError,
        r"ssd: x must have no empty dimension, got \[2, 5, 4, 0\]",
    ),
]


@pytest.mark.parametrize("name, replacement, error, message", REFUSALS, ids=[case[0] for case in REFUSALS])
def test_ssd_refuses(name: str, replacement, error: type, message: str) -> None:
    """What no backend can run is refused with one sentence, before any kernel starts."""
    inputs = {name: t.detach() for name, t in make_inputs(2, 5, 4, 8, 8, 2).items()}
    with pytest.raises(error, match=message):
        ssd(**{**inputs, **replacement(inputs)})


def test_ssd_backend_and_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = make_inputs(2, 5, 4, 8, 8, 2)
    assert torch.equal(ssd(**inputs, backend="reference"), ssd(**inputs))
    with pytest.raises(ValueError, match=r"ssd: unknown backend 'cuda'"):
        ssd(**inputs, backend="cuda")
    # CPU tensors run the Triton kernels only under the interpreter (tests/kernels/triton sets it)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=r"ssd: backend='triton'"):
        ssd(**inputs, backend="triton")
    with pytest.raises(ValueError, match=r"ssd: chunk_size must be a positive integer, got 0"):
        ssd(**inputs, chunk_size=0)
