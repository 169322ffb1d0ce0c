"""xLSTM mLSTM: the public function and its dispatch. See `reference.py` for the recurrence."""

from __future__ import annotations

import torch

from kernels._backend import resolve_backend
from kernels._checks import check_chunk_size, check_shape, check_tensors, check_tokens, check_triton_dtypes
from kernels.mlstm.reference import State, mlstm_chunked, mlstm_step

__all__ = ["State", "mlstm", "mlstm_step"]


def mlstm(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    i: torch.Tensor,
    f: torch.Tensor,
    *,
    initial_state: State | None = None,
    return_final_state: bool = False,
    chunk_size: int | None = None,
    backend: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, State]:
    """xLSTM mLSTM with stabilised exponential gating (input gate exp(i), forget gate σ(f)).

    Args:
        q, k: `[B, T, H, K]` fp32 or bf16; q is scaled by 1/√K inside.
        v: `[B, T, H, V]`.
        i, f: `[B, T, H]` input and forget gate pre-activations.
        initial_state: `(C [B, H, K, V], n [B, H, K], m [B, H])`, optional (the empty state, all zeros).
        return_final_state: also return the state after the last token.
        chunk_size: tokens per chunk, default 64; any T works.
        backend: None (Triton for CUDA tensors, else the reference), "reference" or "triton".

    Returns:
        h `[B, T, H, V]` in the dtype of q, or `(h, (C, n, m))` with the final state in fp32.

    Raises:
        ValueError: a shape that does not fit, an empty dimension, inputs on different devices.
        TypeError: a tensor that is not floating point; for the Triton kernels, one that is not fp32/bf16.
    """
    check_shape("mlstm", "q", q, "B T H K", (None,) * 4)
    b, T, H, K = q.shape
    check_tokens("mlstm", "q", T)
    check_shape("mlstm", "k", k, "B T H K", (b, T, H, K))
    check_shape("mlstm", "v", v, "B T H V", (b, T, H, None))
    V = v.shape[-1]
    check_shape("mlstm", "i", i, "B T H", (b, T, H))
    check_shape("mlstm", "f", f, "B T H", (b, T, H))
    if initial_state is not None:
        if not isinstance(initial_state, (tuple, list)) or len(initial_state) != 3:
            raise ValueError(
                f"mlstm: initial_state must be a tuple (C, n, m), got {type(initial_state).__name__}"
                + (f" of length {len(initial_state)}" if isinstance(initial_state, (tuple, list)) else "")
            )
        C0, n0, m0 = initial_state
        check_shape("mlstm", "initial_state C", C0, "B H K V", (b, H, K, V))
        check_shape("mlstm", "initial_state n", n0, "B H K", (b, H, K))
        check_shape("mlstm", "initial_state m", m0, "B H", (b, H))
    chunk_size = 64 if chunk_size is None else chunk_size
    check_chunk_size("mlstm", chunk_size)
    tensors = {"q": q, "k": k, "v": v, "i": i, "f": f}
    if initial_state is not None:
        tensors.update(zip(("initial_state C", "initial_state n", "initial_state m"), initial_state))
    check_tensors("mlstm", "q", tensors)

    if resolve_backend(backend, q, op="mlstm", has_triton=True) == "triton":
        from kernels.mlstm.triton import mlstm_triton

        check_triton_dtypes("mlstm", tensors)
        h, final_state = mlstm_triton(q, k, v, i, f, initial_state=initial_state, chunk_size=chunk_size)
    else:
        h, final_state = mlstm_chunked(q, k, v, i, f, initial_state=initial_state, chunk_size=chunk_size)
    return (h, final_state) if return_final_state else h
