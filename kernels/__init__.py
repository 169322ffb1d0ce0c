"""Recurrent ops of the hybrid proxies: Mamba-2 SSD, Mamba-1 selective scan, xLSTM mLSTM, and the gated
delta rule (Gated DeltaNet, KDA).

One folder per op (`reference.py`: plain PyTorch ground truth; `triton.py`: the GPU kernels;
`__init__.py`: the public function and its dispatch). Layout is `[batch, time, heads, dim]`.
"""

from kernels._backend import BACKENDS, resolve_backend

__all__ = ["BACKENDS", "resolve_backend"]
