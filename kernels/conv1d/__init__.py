"""Causal depthwise conv1d (+ SiLU), the short convolution in front of Mamba, Gated DeltaNet and the short-conv
mixers: the public function and its dispatch. See `reference.py` for the formula."""

from __future__ import annotations

import torch

from kernels._backend import resolve_backend
from kernels._checks import check_shape, check_tensors, check_tokens, check_triton_dtypes
from kernels.conv1d.reference import causal_conv1d_reference

__all__ = ["ACTIVATIONS", "causal_conv1d"]

ACTIVATIONS = (None, "silu")


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    initial_state: torch.Tensor | None = None,
    activation: str | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """y_t = act(bias + Σ_k weight[:, k] · x_{t-(W-1)+k}), each channel on its own, causal in time.

    Args:
        x: `[B, T, C]` fp32 or bf16; a view with channels of stride 1 (a slice of a projection) is read in place.
        weight: `[C, W]` (an `nn.Conv1d(C, C, W, groups=C)` weight is `weight[:, 0]`).
        bias: `[C]`, optional.
        initial_state: `[B, W-1, C]`, the W-1 inputs before x (zeros if None): chunked prefill and decoding.
            The Triton kernels take no gradient for it; a state that wants one runs on the reference.
        activation: None or "silu", applied to the output (fused into the kernel).
        backend: None (Triton for CUDA tensors, else the reference; one token, T == 1, always on the reference:
            a decode step's W-tap dot is a few plain ops that a compiled step fuses with its neighbours, where the
            tiled kernel would spend a launch, mostly masked, on it; so is a width W above 4, which the kernels
            do not unroll), "reference" or "triton".

    Returns:
        y `[B, T, C]` in the dtype of x (computed in fp32).

    Raises:
        ValueError: a shape that does not fit, an empty dimension, inputs on different devices, an unknown
            activation, a width above 4 for backend="triton".
        TypeError: a tensor that is not floating point; for the Triton kernels, one that is not fp32/bf16.
    """
    op = "causal_conv1d"
    check_shape(op, "x", x, "B T C", (None,) * 3)
    b, T, C = x.shape
    check_tokens(op, "x", T)
    check_shape(op, "weight", weight, "C W", (C, None))
    W = weight.shape[1]
    if bias is not None:
        check_shape(op, "bias", bias, "C", (C,))
    if initial_state is not None:
        check_shape(op, "initial_state", initial_state, "B W-1 C", (b, W - 1, C))
    if activation not in ACTIVATIONS:
        raise ValueError(f"{op}: unknown activation {activation!r}; use one of {', '.join(map(str, ACTIVATIONS))}")
    tensors = {"x": x, "weight": weight, "bias": bias, "initial_state": initial_state}
    check_tensors(op, "x", {k: v for k, v in tensors.items() if not (k == "initial_state" and W == 1)})

    state_wants_grad = initial_state is not None and initial_state.requires_grad and torch.is_grad_enabled()
    one_token = backend is None and T == 1
    if not one_token and resolve_backend(backend, x, op=op) == "triton" and not state_wants_grad:
        from kernels.conv1d.triton import MAX_W, causal_conv1d_triton

        if W > MAX_W:
            if backend == "triton":
                raise ValueError(f"{op}: the Triton kernels take widths up to {MAX_W}, not {W}; "
                                 f"use backend='reference' (or None, which picks it) for a wider convolution")
            return causal_conv1d_reference(x, weight, bias, initial_state=initial_state, activation=activation)
        check_triton_dtypes(op, tensors)
        return causal_conv1d_triton(x, weight, bias, initial_state, activation == "silu")
    return causal_conv1d_reference(x, weight, bias, initial_state=initial_state, activation=activation)
