"""Recurrent ops of the hybrid proxies: Mamba-2 SSD, Mamba-1 selective scan, xLSTM mLSTM, and the gated
delta rule (Gated DeltaNet, KDA).

One folder per op (`reference.py`: plain PyTorch ground truth; `triton.py`: the GPU kernels;
`__init__.py`: the public function and its dispatch). Layout is `[batch, time, heads, dim]`.

Each op's Triton forward and backward are PyTorch operators (`torch.library.custom_op`, namespace
`hybrid_nas`) with their autograd and output shapes registered, so `torch.compile(model, fullgraph=True)`
traces a whole proxy without a graph break (tests/kernels/triton/test_models_compile.py).

Environment knobs. Read at each call:
- `KERNELS_BACKEND=reference|triton`: the backend of every op called with `backend=None`; `triton` on the CPU
  needs `TRITON_INTERPRET=1`.
- `KERNELS_DELTA_INVERSE=tiles|blocks|rows` and `KERNELS_DELTA_WY=split|fused`: how the gated delta rule forms
  each chunk's inverse, and whether in a kernel apart from W and U' (`kernels/delta/triton.py`).
- `KERNELS_MLSTM_DQK_BK=64|32|...`: the mLSTM's dq/dk kernel's block of keys.

Read when the kernels are imported (`kernels/_triton.py`):
- `KERNELS_WARPS=W`: every tuned kernel at W warps.
- `KERNELS_AUTOTUNE=once`: every config run once, untimed.
- `KERNELS_AMPERE_MMA=0`: the mLSTM keeps Hopper's warpgroup MMA, at 2 warps, where Triton 3.4–3.7.0
  miscompiles it at 4 and 8 (by default it compiles to Ampere's MMA there).
"""

from kernels._backend import BACKENDS, resolve_backend

__all__ = ["BACKENDS", "resolve_backend"]
