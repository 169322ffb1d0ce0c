"""xLSTM mLSTM: the chunked form against the token-by-token stabilised recurrence."""

from __future__ import annotations

import pytest
import torch

from kernels.mlstm import mlstm, mlstm_step
from kernels.mlstm.reference import mlstm_recurrent
from kernels.testing import assert_close

SHAPES = [  # B, T, H, K, V, chunk_size
    (2, 1, 2, 8, 16, 64),
    (2, 37, 3, 16, 8, 16),
    (1, 64, 2, 8, 8, 16),  # exactly four chunks
    (1, 257, 2, 16, 32, 64),
]
PER_TOKEN = ("q", "k", "v", "i", "f")


def shape_id(shape: tuple[int, ...]) -> str:
    return "B{}-T{}-H{}-K{}-V{}-L{}".format(*shape)


def make_inputs(B: int, T: int, H: int, K: int, V: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    inputs = {
        "q": torch.randn(B, T, H, K),
        "k": torch.randn(B, T, H, K),
        "v": torch.randn(B, T, H, V),
        "i": torch.randn(B, T, H),
        "f": torch.randn(B, T, H) + 3,  # forget gates mostly open, as after the usual bias init
    }
    return {name: t.to(dtype).requires_grad_() for name, t in inputs.items()}


def make_state(B: int, H: int, K: int, V: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A state as after a prefix: C and n sums of writes, m of the size of recent input gates."""
    C, n, m = torch.randn(B, H, K, V) * 2, torch.randn(B, H, K) * 2, torch.randn(B, H)
    return C.requires_grad_(), n.requires_grad_(), m.requires_grad_()


def time_slice(inputs: dict[str, torch.Tensor], t: slice | int) -> dict[str, torch.Tensor]:
    return {name: x[:, t] for name, x in inputs.items()}


@pytest.mark.parametrize("with_state", [False, True], ids=["empty", "state"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_mlstm(shape: tuple[int, ...], with_state: bool) -> None:
    B, T, H, K, V, chunk_size = shape
    inputs = make_inputs(B, T, H, K, V)
    state0 = make_state(B, H, K, V) if with_state else None
    h, state = mlstm(**inputs, initial_state=state0, return_final_state=True, chunk_size=chunk_size)
    ref_h, ref_state = mlstm_recurrent(**inputs, initial_state=state0)
    assert_close("h", h, ref_h, 1e-4)
    for name, s, ref_s in zip("Cnm", state, ref_state):
        assert_close(f"final_state {name}", s, ref_s, 1e-4)

    leaves = {**inputs, **({} if state0 is None else dict(zip(("C0", "n0", "m0"), state0)))}
    cotangents = (torch.randn_like(h), *(torch.randn_like(s) for s in state))
    grads = torch.autograd.grad((h, *state), list(leaves.values()), cotangents)
    ref_grads = torch.autograd.grad((ref_h, *ref_state), list(leaves.values()), cotangents)
    for name, grad, ref_grad in zip(leaves, grads, ref_grads):
        assert_close(f"d{name}", grad, ref_grad, 1e-4)


@pytest.mark.parametrize("shape", [SHAPES[1], SHAPES[3]], ids=shape_id)
def test_mlstm_bf16(shape: tuple[int, ...]) -> None:
    B, T, H, K, V, chunk_size = shape
    inputs = make_inputs(B, T, H, K, V, dtype=torch.bfloat16)
    state0 = make_state(B, H, K, V)
    h, state = mlstm(**inputs, initial_state=state0, return_final_state=True, chunk_size=chunk_size)
    assert h.dtype == torch.bfloat16 and all(s.dtype == torch.float32 for s in state)
    fp32_inputs = {name: t.float() for name, t in inputs.items()}
    ref_h, ref_state = mlstm_recurrent(**fp32_inputs, initial_state=state0)
    assert_close("h", h, ref_h, 2e-2)
    for name, s, ref_s in zip("Cnm", state, ref_state):
        assert_close(f"final_state {name}", s, ref_s, 2e-2)


def test_mlstm_split_sequence() -> None:
    """The second half started from the first half's final state continues the whole sequence."""
    inputs = make_inputs(2, 37, 2, 8, 16)
    h, state = mlstm(**inputs, return_final_state=True, chunk_size=16)
    h1, state1 = mlstm(**time_slice(inputs, slice(None, 20)), return_final_state=True, chunk_size=16)
    h2, state2 = mlstm(**time_slice(inputs, slice(20, None)), initial_state=state1, return_final_state=True)
    assert_close("h", torch.cat([h1, h2], dim=1), h, 1e-4)
    for name, s, whole in zip("Cnm", state2, state):
        assert_close(f"final_state {name}", s, whole, 1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("with_state", [False, True], ids=["empty", "state"])
def test_mlstm_step(with_state: bool, dtype: torch.dtype) -> None:
    """Decoding token by token from the initial state reproduces the parallel output and final state."""
    inputs = make_inputs(2, 37, 2, 8, 16, dtype=dtype)
    state0 = make_state(2, 2, 8, 16) if with_state else None
    h, state = mlstm(**inputs, initial_state=state0, return_final_state=True, chunk_size=16)
    step_state, hs = state0, []
    for t in range(37):
        h_t, step_state = mlstm_step(**time_slice(inputs, t), state=step_state)
        hs.append(h_t)
    assert hs[0].dtype == dtype and all(s.dtype == torch.float32 for s in step_state)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    assert_close("h", torch.stack(hs, dim=1), h, tol)
    for name, s, whole in zip("Cnm", step_state, state):
        assert_close(f"final_state {name}", s, whole, tol)


def test_mlstm_recurrence_by_hand() -> None:
    """The unstabilised form of the paper, so that a mistake shared by every form fails.

    From the empty state the true memory is C̃_t = σ(f_t) C̃_{t-1} + exp(i_t) k_t v_tᵀ (ñ likewise), and
    h_t = q̂_tᵀC̃_t / max(|q̂_tᵀñ_t|, 1): the stabiliser m cancels, the lower bound exp(-m_t) becomes 1.
    """
    inputs = make_inputs(1, 6, 2, 4, 3)
    inputs["q"].data[:, 2] *= 1e-3  # a token where the lower bound of the denominator is what counts
    h = mlstm(**inputs)
    q, k, v, i, f = (t.detach().double() for t in inputs.values())
    q = q / 2  # 1/√K
    C, n = torch.zeros(1, 2, 4, 3, dtype=torch.double), torch.zeros(1, 2, 4, dtype=torch.double)
    for t in range(6):
        forget, write = torch.sigmoid(f[:, t]), torch.exp(i[:, t])  # [1, H]
        C = forget[..., None, None] * C + write[..., None, None] * k[:, t, :, :, None] * v[:, t, :, None, :]
        n = forget[..., None] * n + write[..., None] * k[:, t]
        den = (q[:, t] * n).sum(-1).abs().clamp_min(1.0)  # [1, H]
        assert_close(f"h[{t}]", h[:, t], torch.einsum("bhk,bhkv->bhv", q[:, t], C) / den[..., None], 1e-5)


BAD_INPUTS = [  # name, replacement, message
    ("T", lambda i: {"q": i["q"][:, :0]}, r"mlstm: q must hold at least one token"),
    ("q", lambda i: {"q": i["q"][0]}, r"mlstm: q must have shape \[B, T, H, K\], got \[5, 2, 8\]"),
    (
        "k",
        lambda i: {"k": i["k"][..., :-1]},
        r"mlstm: k must have shape \[B=2, T=5, H=2, K=8\], got \[2, 5, 2, 7\]",
    ),
    (
        "v",
        lambda i: {"v": i["v"][:, 1:]},
        r"mlstm: v must have shape \[B=2, T=5, H=2, V\], got \[2, 4, 2, 16\]",
    ),
    (
        "i",
        lambda i: {"i": i["i"][..., None]},
        r"mlstm: i must have shape \[B=2, T=5, H=2\], got \[2, 5, 2, 1\]",
    ),
    ("f", lambda i: {"f": i["f"][:, :, 0]}, r"mlstm: f must have shape \[B=2, T=5, H=2\], got \[2, 5\]"),
    (
        "initial_state",
        lambda i: {"initial_state": make_state(2, 2, 8, 16)[:2]},
        r"mlstm: initial_state must be a tuple \(C, n, m\), got tuple of length 2",
    ),
    (
        "initial_state C",
        lambda i: {"initial_state": (torch.zeros(2, 2, 16, 8), torch.zeros(2, 2, 8), torch.zeros(2, 2))},
        r"mlstm: initial_state C must have shape \[B=2, H=2, K=8, V=16\], got \[2, 2, 16, 8\]",
    ),
    (
        "initial_state n",
        lambda i: {"initial_state": (torch.zeros(2, 2, 8, 16), torch.zeros(2, 8), torch.zeros(2, 2))},
        r"mlstm: initial_state n must have shape \[B=2, H=2, K=8\], got \[2, 8\]",
    ),
    (
        "initial_state m",
        lambda i: {"initial_state": (torch.zeros(2, 2, 8, 16), torch.zeros(2, 2, 8), torch.zeros(2, 2, 1))},
        r"mlstm: initial_state m must have shape \[B=2, H=2\], got \[2, 2, 1\]",
    ),
]


@pytest.mark.parametrize("name, replacement, message", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_mlstm_rejects_bad_inputs(name: str, replacement, message: str) -> None:
    inputs = make_inputs(2, 5, 2, 8, 16)
    with pytest.raises(ValueError, match=message):
        mlstm(**{**inputs, **replacement(inputs)})


REFUSALS = [  # name, replacement, error, message
    (
        "integer",
        lambda i: {"i": i["i"].long()},
        TypeError,
        r"mlstm: i must be a floating-point tensor, got torch.int64",
    ),
    (
        "device",
        lambda i: {"v": i["v"].to("meta")},
        ValueError,
        r"mlstm: v is on meta but q is on cpu; put every input on one device",
    ),
    (
        "state device",
        lambda i: {"initial_state": (torch.zeros(2, 2, 8, 16, device="meta"), torch.zeros(2, 2, 8), torch.zeros(2, 2))},
        ValueError,
        r"mlstm: initial_state C is on meta but q is on cpu",
    ),
    (
        "empty",
        lambda i: {name: t[:, :, :0] for name, t in i.items()},
        ValueError,
        r"mlstm: q must have no empty dimension, got \[2, 5, 0, 8\]",
    ),
]


@pytest.mark.parametrize("name, replacement, error, message", REFUSALS, ids=[case[0] for case in REFUSALS])
def test_mlstm_refuses(name: str, replacement, error: type, message: str) -> None:
    """What no backend can run is refused with one sentence, before any kernel starts."""
    inputs = {name: t.detach() for name, t in make_inputs(2, 5, 2, 8, 16).items()}
    with pytest.raises(error, match=message):
        mlstm(**{**inputs, **replacement(inputs)})


def test_mlstm_backend_and_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = make_inputs(2, 5, 2, 8, 16)
    assert torch.equal(mlstm(**inputs, backend="reference"), mlstm(**inputs))
    with pytest.raises(ValueError, match=r"mlstm: unknown backend 'cuda'"):
        mlstm(**inputs, backend="cuda")
    # CPU tensors run the Triton kernels only under the interpreter (tests/kernels/triton sets it)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match=r"mlstm: backend='triton'"):
        mlstm(**inputs, backend="triton")
    with pytest.raises(ValueError, match=r"mlstm: chunk_size must be a positive integer, got -1"):
        mlstm(**inputs, chunk_size=-1)
