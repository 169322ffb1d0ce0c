"""mamba_ssm's CUDA selective scan as torch operators with their autograd, in the project's layout, so that a
Mamba-1 proxy trains (and compiles whole) on it in place of the project's Triton scan: the anchor row of
`benchmarks/proxy_throughput.py --mamba-scan-so`.

    with anchor_scan(module):          # module: selective_scan_cuda (the extension, or this folder's stand-in)
        model = build_model(cfg)       # its Mamba-1 layers call the anchor while the block lasts

The proxy's tensors are channels-last ([B, T, Dc], B and C [B, T, N]); mamba_ssm's kernels take channels-first
bf16, so each call transposes its inputs and outputs (copies of the size of u that mamba_ssm's own Mamba block,
channels-first throughout, does not make) and rounds Δ to bf16, as mamba_ssm's kernels take it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from types import ModuleType

import torch

Tensor = torch.Tensor
_MODULE: list[ModuleType] = []  # the selective_scan_cuda that the operators call
CHUNK = 2048  # tokens per chunk of mamba_ssm's walk, whose entering states x holds (wrapper.cu's kChunk)


def load(so_path: str | Path) -> ModuleType:
    """This folder's `selective_scan_cuda` over the library that build.sh made."""
    os.environ["HNAS_SCAN_ANCHOR_SO"] = str(Path(so_path).resolve())
    folder = str(Path(__file__).resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    import selective_scan_cuda

    return selective_scan_cuda


@torch.library.custom_op("hnas_anchor::selective_scan_fwd", mutates_args=())
def scan_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor
             ) -> tuple[Tensor, Tensor, Tensor]:
    """mamba_ssm's forward, channels-first (u, Δ, z [B, Dc, T] bf16; B, C [B, 1, N, T] bf16; A, D fp32):
    (y = out·silu(z), out, x: the states at each chunk of CHUNK tokens, which the backward starts from)."""
    out, x, out_z = _MODULE[0].fwd(u, delta, A, B, C, D, z, None, False)
    return out_z, out, x


@scan_fwd.register_fake
def _(u, delta, A, B, C, D, z):
    b, Dc, T = u.shape
    return torch.empty_like(u), torch.empty_like(u), u.new_empty(b, Dc, -(-T // CHUNK), 2 * A.shape[1],
                                                                   dtype=torch.float32)


@torch.library.custom_op("hnas_anchor::selective_scan_bwd", mutates_args=())
def scan_bwd(dy: Tensor, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
             out: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(du, dΔ, dA, dB, dC, dD, dz), channels-first as `scan_fwd` takes its inputs."""
    du, ddelta, dA, dB, dC, dD, _, dz = _MODULE[0].bwd(u, delta, A, B, C, D, z, None, dy.contiguous(), x, out,
                                                      None, False, False)
    return du, ddelta, dA, dB, dC, dD, dz


@scan_bwd.register_fake
def _(dy, u, delta, A, B, C, D, z, out, x):
    return tuple(torch.empty_like(t) for t in (u, delta, A, B, C, D, z))


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs, output[1], output[2])


def _backward(ctx, dy, _dout, _dx):
    return scan_bwd(dy, *ctx.saved_tensors)


scan_fwd.register_autograd(_backward, setup_context=_setup_context)


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, *, D: Tensor | None = None,
                   z: Tensor | None = None, initial_state: Tensor | None = None,
                   return_final_state: bool = False) -> Tensor:
    """`kernels.selective_scan.selective_scan`'s signature, training's path only (D and z given, no state). The
    layout and dtype changes around the operator are torch's, so autograd takes the gradients back through them."""
    if D is None or z is None or initial_state is not None or return_final_state or B.dim() != 3:
        raise ValueError("the anchor's scan takes Mamba-1's training call only: D and z given, B and C [B, T, N], "
                         "no initial or final state")
    bf16 = torch.bfloat16
    ut, dt, zt = (t.transpose(1, 2).to(bf16).contiguous() for t in (u, delta, z))
    Bt, Ct = (t.transpose(1, 2).unsqueeze(1).to(bf16).contiguous() for t in (B, C))  # [B, 1, N, T]
    y = scan_fwd(ut, dt, A.float().contiguous(), Bt, Ct, D.float().contiguous(), zt)[0]
    return y.transpose(1, 2).to(u.dtype)


@contextlib.contextmanager
def anchor_scan(module: ModuleType):
    """Mamba-1 layers (`workers.models.mamba1`) call mamba_ssm's scan through `module` while the block lasts."""
    import workers.models.mamba1 as mamba1

    _MODULE[:] = [module]
    before = mamba1.selective_scan
    mamba1.selective_scan = selective_scan
    try:
        yield
    finally:
        mamba1.selective_scan = before
        _MODULE.clear()
