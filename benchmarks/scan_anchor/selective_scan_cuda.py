"""mamba_ssm's `selective_scan_cuda` extension module, over the shared library that `build.sh` makes.

`mamba_ssm.ops.selective_scan_interface` imports a module of this name (the extension that mamba-ssm's setup.py
compiles against torch); with this folder first on `sys.path`, it gets this one instead, and its
`selective_scan_fn` runs mamba_ssm's own CUDA kernels through ctypes. `fwd` and `bwd` take and return what the
extension's do, for what the benchmark asks of them: bf16 inputs, a real fp32 A, B and C per token
([B, G, N, L]). `benchmarks/kernels.py --mamba-scan-so PATH` points `HNAS_SCAN_ANCHOR_SO` at the library.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import torch

ENV = "HNAS_SCAN_ANCHOR_SO"
DEFAULT = Path(__file__).resolve().parents[2] / ".anchors" / "selective_scan_anchor.so"
CHUNK = 2048  # tokens per chunk of the kernels' walk (x holds the state at each)


def _library() -> ctypes.CDLL:
    path = Path(os.environ.get(ENV) or DEFAULT)
    if not path.is_file():
        # the fix first: a table cell keeps an error's first 120 characters, and the path can be long
        raise ImportError(f"the library is not built: build it with benchmarks/scan_anchor/build.sh (or set {ENV}); "
                          f"no {path}")
    lib = ctypes.CDLL(str(path))
    lib.hnas_scan_fwd.argtypes = [ctypes.c_int] * 5 + [ctypes.c_void_p] * 11 + [ctypes.c_int, ctypes.c_void_p]
    lib.hnas_scan_bwd.argtypes = [ctypes.c_int] * 5 + [ctypes.c_void_p] * 19 + [ctypes.c_int, ctypes.c_void_p]
    lib.hnas_scan_fwd.restype = lib.hnas_scan_bwd.restype = ctypes.c_int
    return lib


_LIB = _library()


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _inputs(u, delta, A, B, C, D, z, delta_bias):
    """The tensors contiguous, their sizes; refuses what the library was not built for."""
    if u.dtype != torch.bfloat16 or A.dtype != torch.float32 or B.dim() != 4 or C.dim() != 4:
        raise ValueError("the mamba_ssm scan anchor is built for bf16 inputs, a real fp32 A and B, C of shape "
                         f"[B, G, N, L]; got u {u.dtype}, A {A.dtype}, B {tuple(B.shape)}, C {tuple(C.shape)}")
    if not u.is_cuda:
        raise ValueError("the mamba_ssm scan anchor runs on a CUDA GPU; the inputs are on the CPU")
    tensors = [None if t is None else t.contiguous() for t in (u, delta, A, B, C, D, z, delta_bias)]
    batch, dim, seqlen = u.shape
    return tensors, (batch, dim, seqlen, A.shape[1], B.shape[1])


def _stream() -> int:
    return torch.cuda.current_stream().cuda_stream


def _done(rc: int, what: str) -> None:
    if rc != 0:
        raise RuntimeError(f"mamba_ssm's selective scan {what} failed with CUDA error {rc}")


def fwd(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """[out, x, (out_z)]: out [B, D, L] before the gate, x [B, D, chunks, 2N] fp32, out_z = out·silu(z)."""
    (u, delta, A, B, C, D, z, delta_bias), sizes = _inputs(u, delta, A, B, C, D, z, delta_bias)
    out = torch.empty_like(delta)
    x = torch.empty(*u.shape[:2], -(-u.shape[2] // CHUNK), 2 * A.shape[1], device=u.device, dtype=torch.float32)
    out_z = torch.empty_like(z) if z is not None else None
    with torch.cuda.device(u.device):
        _done(_LIB.hnas_scan_fwd(*sizes, *map(_ptr, (u, delta, A, B, C, D, delta_bias, z, out, out_z, x)),
                                 int(delta_softplus), _stream()), "forward")
    return [out, x] + ([out_z] if z is not None else [])


def bwd(u, delta, A, B, C, D, z, delta_bias, dout, x, out, dz, delta_softplus, recompute_out_z):
    """[du, ddelta, dA, dB, dC, dD, ddelta_bias, (dz)]."""
    if recompute_out_z:
        raise NotImplementedError("the scan anchor does not recompute out_z (mamba_inner_fn's path)")
    (u, delta, A, B, C, D, z, delta_bias), sizes = _inputs(u, delta, A, B, C, D, z, delta_bias)
    dout, x = dout.contiguous(), x.contiguous()
    out = out.contiguous() if out is not None else None
    du, ddelta = torch.empty_like(u), torch.empty_like(delta)
    dA = torch.zeros_like(A)
    dB, dC = torch.zeros_like(B, dtype=torch.float32), torch.zeros_like(C, dtype=torch.float32)
    dD = torch.zeros_like(D) if D is not None else None
    ddelta_bias = torch.zeros_like(delta_bias) if delta_bias is not None else None
    if z is not None and dz is None:
        dz = torch.empty_like(z)
    with torch.cuda.device(u.device):
        _done(_LIB.hnas_scan_bwd(*sizes, *map(_ptr, (u, delta, A, B, C, D, delta_bias, z, out, x, dout, du, ddelta,
                                                     dA, dB, dC, dD, ddelta_bias, dz)),
                                 int(delta_softplus), _stream()), "backward")
    return [du, ddelta, dA, dB.to(B.dtype), dC.to(C.dtype), dD, ddelta_bias] + ([dz] if z is not None else [])
