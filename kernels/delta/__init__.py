"""The gated delta rule (Gated DeltaNet, KDA): the public function and its dispatch. See `reference.py`."""

from __future__ import annotations

import torch

from kernels._backend import resolve_backend
from kernels._checks import check_chunk_size, check_shape, check_tensors, check_tokens, check_triton_dtypes
from kernels.delta.reference import gated_delta_chunked
from kernels.delta.reference import gated_delta_step as _step

__all__ = ["MAX_TRITON_K", "gated_delta", "gated_delta_step"]

MAX_TRITON_K = 256  # the Triton state walks hold a whole key dimension of the state in registers


def gated_delta(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    *,
    scale: float | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    chunk_size: int | None = None,
    backend: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Gated delta rule: S_t = (I − β_t k_t k_tᵀ)(exp(g_t) ⊙ S_{t−1}) + β_t k_t v_tᵀ, o_t = scale · S_tᵀ q_t.

    Args:
        q, k: `[B, T, H, K]` fp32 or bf16, already L2-normalised (the layer does it).
        v: `[B, T, H, V]`.
        g: log decay ≤ 0, `[B, T, H]` (one per head: Gated DeltaNet) or `[B, T, H, K]` (one per key
            channel, scaling row i of the state by exp(g[..., i]): Kimi Delta Attention).
        beta: `[B, T, H]` write strengths in (0, 1).
        scale: the read-out scale, default 1/√K.
        initial_state: `[B, H, K, V]`, optional (zeros).
        return_final_state: also return the state after the last token.
        chunk_size: tokens per chunk, default 64 (a channel-wise gate uses at most 16); any T works.
        backend: None (Triton for CUDA tensors, else the reference), "reference" or "triton".

    Returns:
        o `[B, T, H, V]` in the dtype of q, or `(o, final_state [B, H, K, V] fp32)`.

    Raises:
        ValueError: a shape that does not fit, an empty dimension, inputs on different devices; for the
            Triton kernels, K over 256.
        TypeError: a tensor that is not floating point; for the Triton kernels, one that is not fp32/bf16.
    """
    check_shape("gated_delta", "q", q, "B T H K", (None,) * 4)
    b, T, H, K = q.shape
    check_tokens("gated_delta", "q", T)
    check_shape("gated_delta", "k", k, "B T H K", (b, T, H, K))
    check_shape("gated_delta", "v", v, "B T H V", (b, T, H, None))
    V = v.shape[-1]
    if isinstance(g, torch.Tensor) and g.ndim == 4:
        check_shape("gated_delta", "g", g, "B T H K", (b, T, H, K))
    elif isinstance(g, torch.Tensor) and g.ndim != 3:
        raise ValueError(
            f"gated_delta: g must have shape [B={b}, T={T}, H={H}] (a decay per head) or "
            f"[B={b}, T={T}, H={H}, K={K}] (a decay per key channel), got {list(g.shape)}"
        )
    else:
        check_shape("gated_delta", "g", g, "B T H", (b, T, H))
    check_shape("gated_delta", "beta", beta, "B T H", (b, T, H))
    if initial_state is not None:
        check_shape("gated_delta", "initial_state", initial_state, "B H K V", (b, H, K, V))
    if scale is None:
        scale = K**-0.5
    elif isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"gated_delta: scale must be a number, got {type(scale).__name__}")
    chunk_size = 64 if chunk_size is None else chunk_size
    check_chunk_size("gated_delta", chunk_size)
    tensors = {"q": q, "k": k, "v": v, "g": g, "beta": beta, "initial_state": initial_state}
    check_tensors("gated_delta", "q", tensors)

    if resolve_backend(backend, q, op="gated_delta", has_triton=True) == "triton":
        check_triton_dtypes("gated_delta", tensors)
        if K > MAX_TRITON_K:
            raise ValueError(
                f"gated_delta: backend='triton' takes K ≤ {MAX_TRITON_K} (a whole key dimension of the "
                f"state is held in registers), got K={K}; use backend='reference'"
            )
        from kernels.delta.triton import gated_delta_triton

        o, final_state = gated_delta_triton(
            q, k, v, g, beta, scale=float(scale), initial_state=initial_state, chunk_size=chunk_size
        )
    else:
        o, final_state = gated_delta_chunked(
            q, k, v, g, beta, scale=float(scale), initial_state=initial_state, chunk_size=chunk_size
        )
    return (o, final_state) if return_final_state else o


def gated_delta_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    state: torch.Tensor | None,
    *,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of `gated_delta`, for decoding: q/k `[B, H, K]`, v `[B, H, V]`, g `[B, H]` or `[B, H, K]`,
    beta `[B, H]`, state `[B, H, K, V]` or None (zeros).

    Returns `(o [B, H, V] in the dtype of q, new_state [B, H, K, V] fp32)`.
    """
    return _step(q, k, v, g, beta, state, scale=q.shape[-1] ** -0.5 if scale is None else scale)
