"""One kernel run on the GPU against the fp64 reference: outputs, final states and every input gradient."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from kernels.testing import assert_close, rel_error

DTYPES = [torch.bfloat16, torch.float32]  # bf16 first: where the H200 found issue 11's wrong gradients
LENGTHS = [1, 2, 37, 64, 65, 257, 1000]
TOLERANCES = {torch.float32: (1e-3, 1e-3), torch.bfloat16: (2e-2, 5e-2)}  # outputs and states, gradients
ZERO_ATOL = {torch.float32: 1e-5, torch.bfloat16: 1e-3}  # a gradient that is zero in the math


def dtype_id(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]


def on_gpu(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inputs (built on the CPU, so every machine draws the same numbers) as leaves on the GPU."""
    return {name: t.detach().cuda().requires_grad_() for name, t in inputs.items()}


def in_fp64(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fp64 leaves holding the same (already rounded) values: the reference's inputs."""
    return {name: t.detach().double().requires_grad_() for name, t in inputs.items()}


def compare(
    outputs: Sequence[torch.Tensor],
    ref_outputs: Sequence[torch.Tensor],
    names: Sequence[str],
    inputs: dict[str, torch.Tensor],
    ref_inputs: dict[str, torch.Tensor],
    dtype: torch.dtype,
    record: Callable[[str, object], None] | None = None,
) -> None:
    """Outputs, then the gradient of every input under the same random cotangents; all are checked
    before the test fails, and the failure lists each one over its tolerance."""
    out_tol, grad_tol = TOLERANCES[dtype]
    gen = torch.Generator().manual_seed(1)
    cotangents = [torch.randn(out.shape, generator=gen).to(out.device, out.dtype) for out in outputs]
    grads = torch.autograd.grad(outputs, list(inputs.values()), cotangents)
    ref_grads = torch.autograd.grad(ref_outputs, list(ref_inputs.values()), [c.double() for c in cotangents])
    checks = [(name, out, ref, out_tol) for name, out, ref in zip(names, outputs, ref_outputs)]
    checks += [(f"d{name}", grad, ref, grad_tol) for name, grad, ref in zip(inputs, grads, ref_grads)]
    failures = [
        f"d{name}: dtype {grad.dtype} != {inputs[name].dtype}"
        for name, grad in zip(inputs, grads)
        if grad.dtype != inputs[name].dtype
    ]
    for name, actual, expected, tol in checks:
        try:
            assert_close(name, actual, expected, tol, zero_atol=ZERO_ATOL[dtype])
        except AssertionError as e:
            failures.append(str(e))
    if record is not None:
        record("rel_errors", {name: f"{rel_error(a, e):.1e}" for name, a, e, _ in checks})
    assert not failures, "; ".join(failures)
