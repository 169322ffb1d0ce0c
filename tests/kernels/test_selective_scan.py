"""Mamba-1 selective scan: the blocked scan (hand-written backward) against the token-by-token recurrence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kernels.selective_scan import selective_scan, selective_scan_step
from kernels.selective_scan.reference import selective_scan_blocked, selective_scan_recurrent
from kernels.testing import assert_close

SHAPES = [  # B, T, Dc, N, G (None: B and C are [B, T, N])
    (2, 1, 16, 8, None),
    (2, 37, 32, 8, 2),
    (1, 128, 16, 4, None),  # exactly eight blocks of 16
    (1, 257, 32, 8, 4),
]
OPTIONS = ["plain", "D", "z", "state", "D-z-state"]
PER_TOKEN = ("u", "delta", "B", "C", "z")
ARGUMENTS = (*PER_TOKEN, "A", "D")


def shape_id(shape: tuple) -> str:
    B, T, Dc, N, G = shape
    return f"B{B}-T{T}-D{Dc}-N{N}" + ("" if G is None else f"-G{G}")


def make_inputs(
    B: int, T: int, Dc: int, N: int, G: int | None, options: str = "D-z-state", dtype=torch.float32
) -> dict[str, torch.Tensor]:
    groups = () if G is None else (G,)
    inputs = {
        "u": torch.randn(B, T, Dc, dtype=dtype),
        "delta": F.softplus(torch.randn(B, T, Dc) - 1).to(dtype),
        "A": -torch.exp(torch.rand(Dc, N)).to(dtype),
        "B": torch.randn(B, T, *groups, N, dtype=dtype),
        "C": torch.randn(B, T, *groups, N, dtype=dtype),
    }
    parts = options.split("-")
    if "D" in parts:
        inputs["D"] = torch.randn(Dc, dtype=dtype)
    if "z" in parts:
        inputs["z"] = torch.randn(B, T, Dc, dtype=dtype)
    if "state" in parts:
        inputs["initial_state"] = torch.randn(B, Dc, N)  # states are fp32 whatever the inputs
    return {name: t.requires_grad_() for name, t in inputs.items()}


def time_slice(inputs: dict[str, torch.Tensor], t: slice | int) -> dict[str, torch.Tensor]:
    """The per-token inputs at time(s) t, with the per-channel ones; without the initial state."""
    return {name: x[:, t] if name in PER_TOKEN else x for name, x in inputs.items() if name in ARGUMENTS}


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_selective_scan(shape: tuple, options: str) -> None:
    inputs = make_inputs(*shape, options=options)
    y, state = selective_scan(**inputs, return_final_state=True)
    ref_y, ref_state = selective_scan_recurrent(**inputs)
    assert_close("y", y, ref_y, 1e-4)
    assert_close("final_state", state, ref_state, 1e-4)

    dy, dstate = torch.randn_like(y), torch.randn_like(state)
    grads = torch.autograd.grad((y, state), list(inputs.values()), (dy, dstate))
    ref_grads = torch.autograd.grad((ref_y, ref_state), list(inputs.values()), (dy, dstate))
    for name, grad, ref_grad in zip(inputs, grads, ref_grads):
        assert_close(f"d{name}", grad, ref_grad, 1e-4)


@pytest.mark.parametrize("block_size", [1, 5, 64])
def test_selective_scan_block_sizes(block_size: int) -> None:
    """The public function always uses 16-token blocks; the result must not depend on them."""
    inputs = make_inputs(2, 37, 32, 8, 2)
    y, state = selective_scan_blocked(**inputs, block_size=block_size)
    ref_y, ref_state = selective_scan_recurrent(**inputs)
    assert_close("y", y, ref_y, 1e-4)
    assert_close("final_state", state, ref_state, 1e-4)


@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[3]], ids=shape_id)
def test_selective_scan_bf16(shape: tuple) -> None:
    inputs = make_inputs(*shape, dtype=torch.bfloat16)
    y, state = selective_scan(**inputs, return_final_state=True)
    assert y.dtype == torch.bfloat16 and state.dtype == torch.float32
    ref_y, ref_state = selective_scan_recurrent(**{name: t.float() for name, t in inputs.items()})
    assert_close("y", y, ref_y, 2e-2)
    assert_close("final_state", state, ref_state, 2e-2)


def test_selective_scan_split_sequence() -> None:
    """The second half started from the first half's final state continues the whole sequence."""
    inputs = make_inputs(2, 150, 32, 8, 2)
    y, state = selective_scan(**inputs, return_final_state=True)
    y1, state1 = selective_scan(
        **time_slice(inputs, slice(None, 70)), initial_state=inputs["initial_state"], return_final_state=True
    )
    y2, state2 = selective_scan(
        **time_slice(inputs, slice(70, None)), initial_state=state1, return_final_state=True
    )
    assert_close("y", torch.cat([y1, y2], dim=1), y, 1e-4)
    assert_close("final_state", state2, state, 1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(2, 37, 32, 8, None), (2, 37, 32, 8, 2)], ids=shape_id)
def test_selective_scan_step(shape: tuple, dtype: torch.dtype) -> None:
    """Decoding token by token from the initial state reproduces the parallel output and final state."""
    inputs = make_inputs(*shape, dtype=dtype)
    y, state = selective_scan(**inputs, return_final_state=True)
    step_state, ys = inputs["initial_state"], []
    for t in range(shape[1]):
        y_t, step_state = selective_scan_step(**time_slice(inputs, t), state=step_state)
        ys.append(y_t)
    assert ys[0].dtype == dtype and step_state.dtype == torch.float32
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    assert_close("y", torch.stack(ys, dim=1), y, tol)
    assert_close("final_state", step_state, state, tol)


def test_selective_scan_recurrence_by_hand() -> None:
    """Two tokens written out, so that a mistake shared by every form (a wrong decay, group map) fails."""
    inputs = make_inputs(1, 2, 4, 3, 2)
    y = selective_scan(**inputs)
    u, delta, A, B, C, D, z, h = (t.detach() for t in inputs.values())
    B, C = B[:, :, [0, 0, 1, 1]], C[:, :, [0, 0, 1, 1]]  # [1, T, Dc, N]: Dc=4 channels read G=2 groups
    for t in range(2):
        decay = torch.exp(delta[:, t, :, None] * A)  # [1, Dc, N]
        h = decay * h + (delta[:, t] * u[:, t])[..., None] * B[:, t]  # [1, Dc, N]
        y_t = (h * C[:, t]).sum(-1) + D * u[:, t]  # [1, Dc]
        assert_close(f"y[{t}]", y[:, t], y_t * z[:, t] * torch.sigmoid(z[:, t]), 1e-5)


BAD_INPUTS = [  # name, replacement, message
    ("T", lambda i: {"u": i["u"][:, :0]}, r"selective_scan: u must hold at least one token"),
    ("u", lambda i: {"u": i["u"][0]}, r"selective_scan: u must have shape \[B, T, Dc\], got \[5, 16\]"),
    (
        "delta",
        lambda i: {"delta": i["delta"][:, 1:]},
        r"selective_scan: delta must have shape \[B=2, T=5, Dc=16\], got \[2, 4, 16\]",
    ),
    ("A", lambda i: {"A": i["A"][:-1]}, r"selective_scan: A must have shape \[Dc=16, N\], got \[15, 8\]"),
    (
        "B",
        lambda i: {"B": i["B"][0, 0]},
        r"selective_scan: B must have shape \[B=2, T=5, N=8\] or \[B=2, T=5, G, N=8\], got \[2, 8\]",
    ),
    ("B", lambda i: {"B": i["B"][..., :-1]}, r"selective_scan: B must have shape .* got \[2, 5, 2, 7\]"),
    ("C", lambda i: {"C": i["C"][:, :, 0]}, r"selective_scan: C must have shape \[B=2, T=5, G=2, N=8\]"),
    ("C", lambda i: {"C": i["C"][:, :, :1]}, r"selective_scan: C must have shape \[B=2, T=5, G=2, N=8\]"),
    ("D", lambda i: {"D": i["D"][:-1]}, r"selective_scan: D must have shape \[Dc=16\], got \[15\]"),
    ("z", lambda i: {"z": i["z"][:, :-1]}, r"selective_scan: z must have shape \[B=2, T=5, Dc=16\]"),
    (
        "initial_state",
        lambda i: {"initial_state": i["initial_state"][..., :-1]},
        r"selective_scan: initial_state must have shape \[B=2, Dc=16, N=8\], got \[2, 16, 7\]",
    ),
    (
        "groups",
        lambda i: {"B": torch.randn(2, 5, 3, 8), "C": torch.randn(2, 5, 3, 8)},
        r"selective_scan: the Dc=16 channels must split evenly into the G=3 groups of B and C",
    ),
]


@pytest.mark.parametrize(
    "name, replacement, message", BAD_INPUTS, ids=[f"{case[0]}-{n}" for n, case in enumerate(BAD_INPUTS)]
)
def test_selective_scan_rejects_bad_inputs(name: str, replacement, message: str) -> None:
    inputs = make_inputs(2, 5, 16, 8, 2)
    with pytest.raises(ValueError, match=message):
        selective_scan(**{**inputs, **replacement(inputs)})


REFUSALS = [  # name, replacement, error, message
    (
        "integer",
        lambda i: {"delta": i["delta"].long()},
        TypeError,
        r"selective_scan: delta must be a floating-point tensor, got torch.int64",
    ),
    (
        "device",
        lambda i: {"initial_state": i["initial_state"].to("meta")},
        ValueError,
        r"selective_scan: initial_state is on meta but u is on cpu; put every input on one device",
    ),
    (
        "empty",
        lambda i: {name: t[:0] if t.ndim > 1 and name not in ("A",) else t for name, t in i.items()},
        ValueError,
        r"selective_scan: u must have no empty dimension, got \[0, 5, 16\]",
    ),
]


@pytest.mark.parametrize("name, replacement, error, message", REFUSALS, ids=[case[0] for case in REFUSALS])
def test_selective_scan_refuses(name: str, replacement, error: type, message: str) -> None:
    """What no backend can run is refused with one sentence, before any kernel starts."""
    inputs = {name: t.detach() for name, t in make_inputs(2, 5, 16, 8, 2).items()}
    with pytest.raises(error, match=message):
        selective_scan(**{**inputs, **replacement(inputs)})


def test_selective_scan_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = make_inputs(2, 5, 16, 8, 2)
    assert torch.equal(selective_scan(**inputs, backend="reference"), selective_scan(**inputs))
    with pytest.raises(ValueError, match=r"selective_scan: unknown backend 'cuda'"):
        selective_scan(**inputs, backend="cuda")
    # CPU tensors run the Triton kernels only under the interpreter (tests/kernels/triton sets it)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=r"selective_scan: backend='triton'"):
        selective_scan(**inputs, backend="triton")
