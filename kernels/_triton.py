"""Helpers shared by the Triton kernels of every op: dot precision, autotuning, block sizes.

Imported only by the `triton.py` files, so importing `kernels` never imports triton.

One rule holds in every kernel: a `dot` never reads the transpose of another dot's result. On Hopper,
Triton 3.4 to 3.7.0 miscompiles `dot(tl.trans(acc), b)` when `acc` is a dot accumulator (wrong values
in bf16, flash-linear-attention issue 640; out-of-bounds shared memory in other kernels of that
family), and torch 2.11 ships Triton 3.6. A kernel that needs both orientations forms the transposed
product from loaded tiles instead (`dot(tl.trans(b), tl.trans(a))` of loads, or the result stored
transposed); transposing a loaded tile is fine.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Callable

import torch
import triton
import triton.language as tl

# How a kernel multiplies its tiles (`MODE`, a constexpr of every kernel that calls `dot`):
DOT_FP32 = 0  # fp32 inputs: tf32x3 on the GPU (fp32 accuracy on tensor cores), exact under the interpreter
DOT_BF16 = 1  # bf16 inputs: bf16 operands, fp32 accumulation
DOT_BF16_EMULATED = 2  # the same rounding under the interpreter, whose tl.dot cannot multiply bf16 tiles
DOT_TF32 = 3  # fp32 operands read as tf32 (one tensor-core product, not tf32x3's three): for fp32 work whose
# result is rounded to bf16 anyway
DOT_TF32_EMULATED = 4  # the same rounding under the interpreter


def interpreting() -> bool:
    """Whether the kernels run under the Triton interpreter (decided when a kernel module is imported)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def dot_mode(dtype: torch.dtype) -> int:
    if dtype == torch.float32:
        return DOT_FP32
    return DOT_BF16_EMULATED if interpreting() else DOT_BF16


def tf32_mode(mode: int) -> int:
    """The mode for products of fp32 tiles in a kernel whose inputs multiply in `mode`: tf32 where the inputs
    are bf16 (their result is rounded to bf16 before it is used), fp32 accuracy where they are fp32."""
    return {DOT_BF16: DOT_TF32, DOT_BF16_EMULATED: DOT_TF32_EMULATED}.get(mode, DOT_FP32)


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the per-chunk states kept between kernels: fp32 for fp32 inputs, bf16 otherwise."""
    return torch.float32 if dtype == torch.float32 else torch.bfloat16


def keep_for_backward(ctx, tensors, saved_outputs) -> None:
    """`setup_context` of an op registered with `torch.library` (`register_autograd`): save `tensors` for the
    backward; the forward's outputs that only carry state to the backward (`saved_outputs`) take no
    gradient, and an output the loss does not use gets None, not a tensor of zeros (as
    `autograd.Function.set_materialize_grads(False)`): the backward skips its work, and no zero tensors the
    size of the saved state are made each step."""
    ctx.save_for_backward(*tensors)
    ctx.mark_non_differentiable(*saved_outputs)
    ctx.set_materialize_grads(False)


def eager_autograd(op, forward, setup_context, backward):
    """A kernel's entry point: `op` (a `torch.library.custom_op` of `forward`, its autograd registered from
    `setup_context` and `backward`) while torch.compile traces the call, so that a layer around it compiles
    whole; in eager mode `forward` and `backward` themselves, as a `torch.autograd.Function`.

    The operator's dispatcher hops between C++ and Python at each call and runs its own checks. On the H200's
    machine the gated delta rule's forward took the host 0.417 ms to issue with the operator and 0.312 with this
    path (the four launches alone: 0.27–0.34), where its kernels take 0.40 ms on the GPU
    (`benchmarks/kernel_profile.py --wall`; docs/benchmarks/delta_h200.md section 8): a launch-bound step waits
    on the host. The backward
    asks `eager(ctx)` which of its operator and that operator's function to call."""

    class Eager(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *inputs):
            output = forward(*inputs)
            setup_context(ctx, inputs, output)
            ctx.eager = True
            return output

        @staticmethod
        def backward(ctx, *grads):
            return backward(ctx, *grads)

    def apply(*inputs):
        # a traced call, or a tensor subclass (fake, functional), takes the operator and its registrations
        if torch.compiler.is_compiling() or type(inputs[0]) is not torch.Tensor:
            return op(*inputs)
        return Eager.apply(*inputs)

    return apply


def eager(ctx) -> bool:
    """Whether a backward's forward ran eagerly (`eager_autograd`): it then calls its kernels' function
    instead of their operator."""
    return getattr(ctx, "eager", False)


def on_device(x: torch.Tensor):
    """A context that makes x's GPU the current one: Triton launches on the current device, whatever
    device the tensors are on, and another GPU's memory is an illegal address there."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def block(n: int, least: int = 16) -> int:
    """A power-of-two tile covering n (tl.dot needs every tile dimension ≥ 16)."""
    return max(least, triton.next_power_of_2(n))


@functools.cache
def _miscompiling_triton() -> bool:
    """Hopper with Triton 3.4 to 3.7.0, whose products of tiles go wrong at some warp counts (see `autotune`)."""
    if interpreting() or not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9:
        return False
    version = tuple(int(x) for x in triton.__version__.split("+")[0].split(".")[:3] if x.isdigit())
    return (3, 4) <= version < (3, 7, 1)


# Whether a kernel that asks for it (`ampere_mma`) compiles its products to Ampere's MMA on the miscompiling
# Triton; `KERNELS_AMPERE_MMA=0` (read when this module is imported) keeps Hopper's and the kernel's `avoid`
AMPERE_MMA = os.environ.get("KERNELS_AMPERE_MMA", "1") != "0"


@contextlib.contextmanager
def ampere_mma(mode: int):
    """A context in which the kernels launched (and so compiled) multiply their tiles with Ampere's MMA
    (`mma.sync`, one warp a product) instead of Hopper's warpgroup MMA, where Triton 3.4 to 3.7.0 would
    miscompile them on Hopper in this dot mode (bf16).

    Triton picks the MMA when it compiles, from the environment (`DISABLE_MMA_V3`, one of the variables its cache
    keys include), so the context sets that variable around the launches alone: other kernels keep Hopper's MMA.
    Setting it is process-wide while the context lasts: a kernel compiled on another thread in that window would
    take Ampere's MMA too (correct, maybe slower). Outside that Triton range, on other GPUs, in other modes and
    with `KERNELS_AMPERE_MMA=0`, it does nothing."""
    if not (AMPERE_MMA and mode == DOT_BF16 and _miscompiling_triton()):
        yield
        return
    before = os.environ.get("DISABLE_MMA_V3")
    os.environ["DISABLE_MMA_V3"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["DISABLE_MMA_V3"]
        else:
            os.environ["DISABLE_MMA_V3"] = before


def _with_warps(configs: list[triton.Config], num_warps: int) -> list[triton.Config]:
    out, seen = [], set()
    for cfg in configs:
        ident = (tuple(sorted(cfg.kwargs.items())), cfg.num_stages, cfg.maxnreg)
        if ident not in seen:
            seen.add(ident)
            out.append(_config(cfg, dict(cfg.kwargs), num_warps))
    return out


def _avoiding(configs: list[triton.Config], mode: int | None, avoid: dict[int, tuple[int, ...]]):
    """The configs without the warp counts `avoid` names for this dot mode; all held to 2 warps if none is left."""
    bad = avoid.get(mode, ())
    kept = [c for c in configs if c.num_warps not in bad]
    return kept or _with_warps(configs, 2)


_CACHES_RESULTS = "cache_results" in inspect.signature(triton.autotune).parameters  # Triton 3.2 and later


def autotune(
    configs: list[triton.Config],
    key: list[str],
    interpret: dict[str, int] | None = None,
    fit: dict[str, str] | None = None,
    avoid: dict[int, tuple[int, ...]] | None = None,
    fits: Callable[[triton.Config, dict], bool] | None = None,
    reset_to_zero: list[str] | None = None,
):
    """`triton.autotune` on the GPU. Under the interpreter, which has no timer to tune with, the kernel
    as it is, launched with the meta-parameters `interpret` (the block sizes the configs would set).

    `fit` maps a tuned block size to the argument it tiles (`{"BN": "N"}`): a block is cut down to
    `block(N)`, so a small N compiles one config instead of several that only pad more.
    `KERNELS_AUTOTUNE=once` (read when a kernel module is imported) runs every config once, untimed,
    and keeps the first: every config is exercised (under compute-sanitizer, say) without the timing
    loops. Only kernels whose outputs do not depend on their tiling tune their block sizes, and no tuned
    kernel reads what it writes, so running one again is harmless (autotuning runs it many times; under
    the interpreter, `KERNELS_RELAUNCH=1` runs it twice to test this). A kernel that adds into an output
    (atomics) names it in `reset_to_zero`: it is zeroed before each run, as the caller zeroed it.

    `avoid` ({dot mode: warp counts}) is what this kernel must not run with on Hopper under Triton 3.4 to
    3.7.0, whose warpgroup-MMA code (4 warps and more) miscompiles some products of tiles. Measured on an
    H200 with Triton 3.6 (`benchmarks/bf16_errors.py`, `benchmarks/gpu_check.sh`): the mLSTM in bf16 is off
    by 0.16 relative at 4 warps and 0.08 at 8 (its h and every gradient but dv), 2e-3 at 2, and right at every
    count under Ampere's MMA, which it now compiles to there instead of avoiding them (`ampere_mma`); the SSD in
    fp32 (tf32x3 products) hits an illegal memory access at 8 warps and is right at 4; the SSD in bf16 is
    right at 2, 4 and 8; the gated delta rule's dwy kernel reads invalid shared memory in its fp32
    products at 8 warps (and, while it still multiplied by products, also in bf16 at 4 or 8 at K = 32;
    docs/benchmarks/delta_h200.md).
    flash-linear-attention refuses its gated backward on the same Triton range.
    `KERNELS_WARPS=W` holds every tuned kernel to W warps (for such measurements).

    `fits(config, meta)` says whether a config can run at the launch's constexprs (`meta`): Triton compiles a
    config before it finds that its shared memory exceeds the SM's, so one that cannot fit costs its whole
    compile (seconds, at the widest tiles) for nothing. Configs it rejects are not compiled; if it rejects
    every one, all are kept.

    Otherwise the chosen configs are kept in Triton's cache directory beside the compiled kernels
    (`cache_results`): a proxy's first run in a process, compiling and tuning its kernels, costs tens of
    seconds on an H200 (benchmarks/trial_phases.py), and each new Ray worker is a new process.
    """
    if interpreting():
        return lambda fn: _WithMeta(fn, interpret or {}, reset_to_zero or [])
    if os.environ.get("KERNELS_WARPS"):
        configs = _with_warps(configs, int(os.environ["KERNELS_WARPS"]))
    elif not (avoid and _miscompiling_triton()):
        avoid = None

    def prune(cfgs: list[triton.Config], args: dict, **meta) -> list[triton.Config]:
        return prune_configs(cfgs, args, meta, fit=fit, avoid=avoid, fits=fits)

    extra = {"reset_to_zero": reset_to_zero} if reset_to_zero else {}
    if fit or avoid or fits:
        extra["prune_configs_by"] = {"early_config_prune": prune}
    if os.environ.get("KERNELS_AUTOTUNE") == "once":
        extra["do_bench"] = _run_once
    elif not os.environ.get("KERNELS_WARPS") and _CACHES_RESULTS:
        extra["cache_results"] = True  # a new process (a new Ray worker) reads the choice, not tuning again
    return triton.autotune(configs=configs, key=key, **extra)


def prune_configs(configs: list[triton.Config], args: dict, meta: dict, *, fit: dict[str, str] | None = None,
                  avoid: dict[int, tuple[int, ...]] | None = None,
                  fits: Callable[[triton.Config, dict], bool] | None = None) -> list[triton.Config]:
    """The configs `autotune` compiles and times for one launch (its `fit`, `avoid` and `fits`)."""
    if fit:
        configs = fit_blocks(configs, args, fit)
    if avoid and not os.environ.get("KERNELS_WARPS"):  # a measurement of each warp count runs them all
        configs = _avoiding(configs, meta.get("MODE"), avoid)
    if fits:
        configs = [c for c in configs if fits(c, meta)] or configs
    return configs


def fit_blocks(configs: list[triton.Config], args: dict, fit: dict[str, str]) -> list[triton.Config]:
    """The configs with each block in `fit` at most `block(args[dim])`; duplicates dropped, order kept."""
    out, seen = [], set()
    for cfg in configs:
        kwargs = {k: min(v, block(args[fit[k]])) if k in fit else v for k, v in cfg.kwargs.items()}
        ident = (tuple(sorted(kwargs.items())), cfg.num_warps, cfg.num_stages, cfg.maxnreg)
        if ident not in seen:
            seen.add(ident)
            out.append(_config(cfg, kwargs, cfg.num_warps))
    return out


def _run_once(kernel_call, quantiles) -> list[float]:
    kernel_call()
    return [0.0] * len(quantiles)


class _WithMeta:
    """`kernel[grid](...)` with fixed meta-parameters added, as an autotuned kernel would get them.

    `KERNELS_RELAUNCH=1` (read at each launch) launches it twice, as autotuning does on the GPU: a kernel
    that reads what it writes (an output updated in place) gives a different result the second time,
    which the interpreter tests then see (`tests/kernels/triton/test_triton_helpers.py`). The arguments named in
    `reset_to_zero` are zeroed before the second launch, as the autotuner zeroes them before each run."""

    def __init__(self, fn, meta: dict[str, int], reset_to_zero: list[str]):
        self.fn, self.meta, self.reset_to_zero = fn, meta, reset_to_zero

    def __getitem__(self, grid):
        launch = self.fn[grid]

        def run(*args, **kwargs):
            for i in range(2 if os.environ.get("KERNELS_RELAUNCH") == "1" else 1):
                if i:
                    named = dict(zip(self.fn.arg_names, args)) | kwargs
                    for name in self.reset_to_zero:
                        named[name].zero_()
                launch(*args, **self.meta, **kwargs)

        return run


def tuned_configs(*modules) -> list[tuple[str, str, str]]:
    """(kernel, key, config) for each autotuned kernel of `modules` and each key it has tuned, or read from
    Triton's cache, in this process: what its launches ran with. The key is Triton's, the tuning key's
    arguments then the tensors' dtypes (shown without the dtypes)."""
    from triton.runtime.autotuner import Autotuner

    out = []
    for module in modules:
        for name, kernel in vars(module).items():
            if isinstance(kernel, Autotuner):
                for key, cfg in kernel.cache.items():
                    shown = ", ".join(str(k) for k in key if not str(k).startswith("torch."))
                    out.append((name, shown, describe_config(cfg)))
    return out


def describe_config(cfg: triton.Config) -> str:
    """`BT 16, BC 64, 4 warps, 2 stages, ≤ 128 registers`."""
    parts = [f"{k} {v}" for k, v in cfg.kwargs.items()] + [f"{cfg.num_warps} warps", f"{cfg.num_stages} stages"]
    return ", ".join(parts + ([f"≤ {cfg.maxnreg} registers"] if cfg.maxnreg else []))


def jit_function(kernel):
    """The JIT function under a kernel's autotuner, heuristics or interpreter wrapper: to compile or launch it at
    one config of one's own (benchmarks/compile_sm90.py, benchmarks/conv_tiles.py)."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    while not isinstance(kernel, (JITFunction, InterpretedFunction)):
        kernel = kernel.fn
    return kernel


def warps(*launches: tuple[int, ...]) -> list[triton.Config]:
    """`warps((4, 2), (8, 2, 128))` -> configs with those (num_warps, num_stages[, maxnreg]).

    maxnreg caps the registers a thread may hold: ptxas otherwise takes up to 255 where it can use them (to
    start loads early), which leaves an SM room for one or two programs of a kernel whose tiles need fewer
    (benchmarks/compile_sm90.py --maxnreg shows what each cap spills)."""
    return tiles((), [()], *launches)


def tiles(names: tuple[str, ...], sizes: list[tuple[int, ...]], *launches: tuple[int, ...]) -> list:
    """Every block-size tuple in `sizes` (named `names`) with every (num_warps, num_stages[, maxnreg]) in
    `launches`."""
    return [
        triton.Config(dict(zip(names, size)), num_warps=launch[0], num_stages=launch[1],
                      maxnreg=launch[2] if len(launch) > 2 else None)
        for size in sizes for launch in launches
    ]


def _config(cfg: triton.Config, kwargs: dict, num_warps: int) -> triton.Config:
    """`cfg` with other block sizes or warps, its stages and register cap kept."""
    return triton.Config(kwargs, num_warps=num_warps, num_stages=cfg.num_stages, maxnreg=cfg.maxnreg)


@triton.jit
def dot(a, b, MODE: tl.constexpr):
    """a @ b with fp32 accumulation; the operands as MODE says (DOT_FP32, DOT_BF16, DOT_TF32, or emulated)."""
    if MODE == 1:
        out = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16))
    elif MODE == 2:
        out = tl.dot(round_bf16(a), round_bf16(b), input_precision="ieee")
    elif MODE == 3:
        out = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="tf32")
    elif MODE == 4:
        out = tl.dot(truncate_tf32(a), truncate_tf32(b), input_precision="ieee")
    else:
        out = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="tf32x3")
    return out


@triton.jit
def round_bf16(x):
    """x rounded to the nearest bf16 (ties to even), as fp32: what the GPU's conversion does. The
    interpreter's own `.to(tl.bfloat16)` truncates, which would double the emulated rounding error."""
    bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def truncate_tf32(x):
    """x with the low 13 bits of its fp32 mantissa cleared: a tf32 operand, at the larger of the errors of the
    conversions a tensor core may apply (truncation rather than rounding to nearest)."""
    bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
    return (bits & 0xFFFFE000).to(tl.float32, bitcast=True)


@triton.jit
def silu_parts(z):
    """(silu(z), silu'(z)) in fp32."""
    sig = tl.sigmoid(z)
    return z * sig, sig * (1.0 + z * (1.0 - sig))
