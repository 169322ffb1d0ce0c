"""Causal depthwise conv1d: the reference against torch's own convolution, the checks, the model module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_inputs import conv1d_inputs

from kernels.conv1d import causal_conv1d
from kernels.testing import assert_close
from workers.models.conv import CausalConv1d


def by_torch(x, weight, bias=None, initial_state=None, activation=None):
    B, _, C = x.shape
    state = initial_state if initial_state is not None else x.new_zeros(B, weight.shape[1] - 1, C)
    y = F.conv1d(torch.cat([state, x], 1).transpose(1, 2), weight[:, None], bias, groups=C).transpose(1, 2)
    return F.silu(y) if activation == "silu" else y


@pytest.mark.parametrize("options", ["plain", "bias", "state", "bias-state"])
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("T", [1, 2, 37])
def test_reference_is_torch_conv1d(T: int, activation: str | None, options: str) -> None:
    torch.manual_seed(0)
    inputs = conv1d_inputs(2, T, 24, 4, options)
    y = causal_conv1d(**inputs, activation=activation, backend="reference")
    ref = by_torch(**inputs, activation=activation)
    assert_close("y", y, ref, 1e-5)
    for name, g, r in zip(inputs, torch.autograd.grad(y.sum(), list(inputs.values())),
                          torch.autograd.grad(ref.sum(), list(inputs.values())), strict=True):
        assert_close(f"d{name}", g, r, 1e-5)


def test_split_sequence_continues_from_the_state() -> None:
    """The second part started from the first part's last W-1 inputs gives the whole sequence's output."""
    torch.manual_seed(0)
    conv = CausalConv1d(16, 4, activation="silu")
    x = torch.randn(2, 30, 16)
    whole, _ = conv(x)
    y1, state = conv(x[:, :11])
    y2, _ = conv(x[:, 11:], state)
    assert_close("y", torch.cat([y1, y2], 1), whole, 1e-6)
    steps, state = [], conv.init_state(2, x.device, x.dtype)  # and token by token, as decoding does
    for t in range(x.shape[1]):
        y, state = conv(x[:, t : t + 1], state)
        steps.append(y)
    assert_close("y", torch.cat(steps, 1), whole, 1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(x=torch.randn(2, 5), weight=torch.randn(5, 4)), r"x must have shape \[B, T, C\], got \[2, 5\]"),
        (dict(x=torch.randn(2, 5, 8), weight=torch.randn(6, 4)), r"weight must have shape \[C=8, W\]"),
        (dict(x=torch.randn(2, 5, 8), weight=torch.randn(8, 4), initial_state=torch.randn(2, 4, 8)),
         r"initial_state must have shape \[B=2, W-1=3, C=8\]"),
        (dict(x=torch.randn(2, 5, 8), weight=torch.randn(8, 4), activation="gelu"),
         "unknown activation 'gelu'; use one of None, silu"),
        (dict(x=torch.randn(2, 0, 8), weight=torch.randn(8, 4)), r"at least one token"),
    ],
)
def test_bad_inputs_get_one_sentence(kwargs: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        causal_conv1d(**kwargs)
