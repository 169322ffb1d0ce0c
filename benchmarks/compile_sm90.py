"""Compile the gated delta rule's (or, with `--op ssd`, Mamba-2's SSD; with `--op mlstm`, xLSTM's mLSTM; with
`--op selective_scan`, Mamba-1's scan; with `--op conv1d`, the causal conv1d) Triton kernels for Hopper (sm_90) on a
machine without a GPU.

    python benchmarks/compile_sm90.py            # every kernel x tiles x dot mode x 2, 4 and 8 warps
    python benchmarks/compile_sm90.py --smoke    # one tile set, bf16, 4 warps (CI)
    python benchmarks/compile_sm90.py --registers --bf16-only --tiles 0 --warps 4 --bv 16,32,64 \
        --kernels delta_fwd_kernel_states --fla-src .anchors/fla_src            # beside fla's states kernel
    python benchmarks/compile_sm90.py --registers --bf16-only --tiles 0 --warps 1,2,4,8 \
        --kernels delta_fwd_kernel_wy,delta_fwd_kernel_inverse,delta_fwd_kernel_wu   # registers and spills
    python benchmarks/compile_sm90.py --op ssd --registers --bf16-only --warps 4,8 --kernels ssd_bwd_kernel_dx
    python benchmarks/compile_sm90.py --op ssd --registers --bf16-only --warps 4,8 --tiles 0 --maxnreg 0,128,168 \
        --kernels ssd_bwd_kernel_dx --set HAS_Z=0,HAS_INIT=0,HAS_DFINAL=0   # capped, at the proxies' case
    python benchmarks/compile_sm90.py --op mlstm --registers --bf16-only --warps 2,4 --tiles 0,2  # dq/dk's BK
    python benchmarks/compile_sm90.py --op conv1d --registers --bf16-only --warps 4,8 --tiles 0   # the conv's backward
    python benchmarks/compile_sm90.py --registers --tiles 0 --warps 2,4 --bv 16,32,64 --stages 1,2,3 --bkf 256 \
        --kernels delta_fwd_kernel_states,delta_bwd_kernel_dstates       # which configs fit an SM at K 256

Triton's `compile` with a CUDA target needs only its bundled ptxas, so the front-end and back-end errors
that the interpreter cannot see (a `static_range` bound that is not a constexpr, a loop-carried value
that changes type, a layout the backend rejects) show here before a GPU call is spent on them. It does
not show miscompiles: the GPU suite and compute-sanitizer do (docs/benchmarks/delta_h200.md). Prints one
line per kernel with the largest shared memory any of its configs asked for; exits 1 if any failed.

`--sass` disassembles each config's cubin (the `nvdisasm` bundled with Triton) and counts its instructions by
kind: where a loop's body dominates a kernel, as in the scan's, the count is that of the loop's body, and the
kinds say what it spends them on (shuffles that cross lanes, `ex2` on the special-function unit, shared memory).
Run under the GPU machine's Triton (3.6, in a venv of its own: `pip install torch==2.13.0 triton==3.6.0`), the
counts are that machine's exactly (the scan's, 2026-12-04); this machine's newer Triton can lower a construct
differently (3.9 scans in reverse without the shuffles that 3.6 spends on it).

`--registers` also assembles each config's PTX with the ptxas bundled with this machine's Triton (`-v`, sm_90a)
and prints the registers per thread and the bytes spilled to local memory: a kernel at 255 registers that
spills holds fewer programs per SM, and waits on local memory. This machine's Triton may generate other code
than the GPU machine's (3.6), so the figures point where to look; the GPU's timings decide.

Each kernel is compiled as Triton's launcher specialises it at the benchmark's shapes: every pointer 16-byte
aligned (torch's allocations are) and every integer argument that the kernel does not exempt
(`do_not_specialize`) a multiple of 16 (H, K and V at B8 T2048 H16 K128 V128), which is what lets its loads
move 16 bytes at a time. `--unaligned` compiles without that knowledge (as this script did before
2026-12-02: scalar 16-bit loads, and more registers; the tables of docs/benchmarks/logs/delta-registers-*.md
are of such code).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import itertools
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KERNELS = ("delta_fwd_kernel_wy", "delta_fwd_kernel_inverse", "delta_fwd_kernel_wu", "delta_fwd_kernel_states",
           "delta_fwd_kernel_output", "delta_bwd_kernel_dv_local", "delta_bwd_kernel_dstates", "delta_bwd_kernel_dwy",
           "delta_bwd_kernel_dqkg")
# (CHANNEL, BL, BK): a decay per head at chunks of 64 and 32, per key channel at 16
TILES = ((False, 64, 64), (False, 32, 32), (True, 16, 16))
# pointers in the input dtype (bf16 when the inputs are: the inputs, their gradients and what the forward
# keeps of its chunks); every other buffer is fp32
INPUT_DTYPE = {"q_ptr", "k_ptr", "v_ptr", "beta_ptr", "do_ptr", "o_ptr", "dq_ptr", "dk_ptr", "dv_ptr", "dbeta_ptr",
               "states_ptr", "dstates_ptr", "w_ptr", "u0_ptr", "u_ptr", "Tm_ptr"}
# Mamba-2's SSD (kernels/ssd/triton.py): its chunked kernels, its tiles (BL, BN, BP at N = P = 64, the proxies'
# shapes: chunks of 64, the most its Triton path runs, and of 128 for comparison) and the pointers in the input dtype
SSD_KERNELS = ("ssd_fwd_kernel_cb", "ssd_fwd_kernel_states", "ssd_fwd_kernel_output", "ssd_bwd_kernel_dstates",
               "ssd_bwd_kernel_dx", "ssd_bwd_kernel_dbc")
SSD_TILES = ((64, 64, 64), (128, 64, 64))
SSD_INPUT_DTYPE = {"x_ptr", "dt_ptr", "B_ptr", "C_ptr", "z_ptr", "dy_ptr", "y_ptr", "dx_ptr", "ddt_ptr", "dz_ptr",
                   "dB_ptr", "dC_ptr", "states_ptr", "dstates_ptr"}
# xLSTM's mLSTM (kernels/mlstm/triton.py): its chunked kernels at K 128, V 256 (kernels.py's shapes), tiles
# (BL, BK, BV), chunks of 64 and 128
MLSTM_KERNELS = ("mlstm_fwd_kernel_states", "mlstm_fwd_kernel_output", "mlstm_bwd_kernel_prep",
                 "mlstm_bwd_kernel_dstates", "mlstm_bwd_kernel_dv", "mlstm_bwd_kernel_dqk", "mlstm_bwd_kernel_gates")
MLSTM_TILES = ((64, 64, 64), (128, 64, 64), (64, 32, 64))
MLSTM_INPUT_DTYPE = {"q_ptr", "k_ptr", "v_ptr", "i_ptr", "f_ptr", "h_ptr", "dh_ptr", "dq_ptr", "dk_ptr", "dv_ptr",
                     "di_ptr", "df_ptr", "states_ptr", "dstates_ptr"}
# the causal conv1d (kernels/conv1d/triton.py): its kernels at tiles (BT, BC), W 4, bias and SiLU, no state (a training
# step's), the g kernel over G_TOKENS tokens a program; its pointers are named without `_ptr`
CONV_KERNELS = ("causal_conv1d_fwd_kernel", "causal_conv1d_bwd_kernel_g", "causal_conv1d_bwd_kernel_dx")
CONV_TILES = ((64, 128), (64, 64), (16, 128), (8, 128), (32, 64), (16, 64))
CONV_POINTERS = frozenset({"x", "w", "bias", "state", "dy", "y", "g", "g_out", "dx", "dw_part", "db_part"})
CONV_INPUT_DTYPE = {"x", "state", "dy", "y", "dx"}
# Mamba-1's selective scan (kernels/selective_scan/triton.py): its two kernels at tiles (BT, BD, BN), D, z, an
# initial state and the final state's gradient present, the scan as `tl.associative_scan` (the GPU's path)
SCAN_KERNELS = ("selective_scan_fwd_kernel", "selective_scan_bwd_kernel")
SCAN_TILES = ((8, 8, 16), (8, 16, 16), (8, 32, 16), (16, 32, 16), (16, 16, 16), (32, 16, 16), (32, 32, 16))
SCAN_INPUT_DTYPE = {"u_ptr", "delta_ptr", "B_ptr", "C_ptr", "z_ptr", "y_ptr", "dy_ptr", "du_ptr", "ddelta_ptr",
                    "dz_ptr"}
INVERSE_KERNELS = ("delta_fwd_kernel_wy", "delta_fwd_kernel_inverse")  # compiled once per inverse method


def delta_consts(tile: tuple, mode: int, inverse: int, BV: int, BKF: int) -> dict:
    from kernels._triton import tf32_mode

    channel, BL, BK = tile
    return dict(CHANNEL=channel, BL=BL, BK=BK, BV=BV, BKF=BKF, MODE=mode, INVERSE=inverse, INV_MODE=tf32_mode(mode),
                HAS_INIT=True, HAS_DFINAL=True, EVEN=True)


def ssd_consts(tile: tuple, mode: int, inverse: int, BV: int, BKF: int) -> dict:
    BL, BN, BP = tile
    return dict(BL=BL, BN=BN, BP=BP, MODE=mode, HAS_D=True, HAS_Z=True, HAS_INIT=True, HAS_DFINAL=True)


def mlstm_consts(tile: tuple, mode: int, inverse: int, BV: int, BKF: int) -> dict:
    BL, BK, BV = tile
    return dict(BL=BL, BK=BK, BV=BV, MODE=mode, HAS_INIT=True, HAS_DFINAL=True, HAS_ROUTE=True)


def scan_consts(tile: tuple, mode: int, inverse: int, BV: int, BKF: int) -> dict:
    BT, BD, BN = tile
    return dict(BT=BT, BD=BD, BN=BN, HAS_D=True, HAS_Z=True, HAS_INIT=True, SAVE=True, HAS_DFINAL=True,
                USE_SCAN=True)


def conv_consts(tile: tuple, mode: int, inverse: int, BV: int, BKF: int) -> dict:
    from kernels.conv1d.triton import G_TOKENS

    BT, BC = tile
    return dict(BT=BT, BC=BC, W=4, HAS_BIAS=True, HAS_STATE=False, SILU=True, TT=G_TOKENS)


@dataclass(frozen=True)
class Op:
    """What this script compiles of one op: its kernels' module and names, its tile sets (and their column's
    header), the pointers in the input dtype, and the constexprs of one config."""

    module: str
    kernels: tuple[str, ...]
    tiles: tuple[tuple, ...]
    tile_names: str
    input_dtype: set[str]
    consts: Callable[[tuple, int, int, int, int], dict]  # (tile, dot mode, inverse, BV, BKF)
    takes_bv: bool = False  # kernels with a BV constexpr, swept by --bv (the delta rule's)
    pointers: frozenset[str] = frozenset()  # pointer arguments whose names do not end in `_ptr`


OPS = {
    "delta": Op("kernels.delta.triton", KERNELS, TILES, "CHANNEL, BL, BK", INPUT_DTYPE, delta_consts, True),
    "ssd": Op("kernels.ssd.triton", SSD_KERNELS, SSD_TILES, "BL, BN, BP", SSD_INPUT_DTYPE, ssd_consts),
    "mlstm": Op("kernels.mlstm.triton", MLSTM_KERNELS, MLSTM_TILES, "BL, BK, BV", MLSTM_INPUT_DTYPE, mlstm_consts),
    "selective_scan": Op("kernels.selective_scan.triton", SCAN_KERNELS, SCAN_TILES, "BT, BD, BN", SCAN_INPUT_DTYPE,
                         scan_consts),
    "conv1d": Op("kernels.conv1d.triton", CONV_KERNELS, CONV_TILES, "BT, BC", CONV_INPUT_DTYPE, conv_consts,
                 pointers=CONV_POINTERS),
}


def compile_kernel(kernel, constexprs: dict, num_warps: int, bf16: bool, aligned: bool = True,
                   input_dtype: set[str] = INPUT_DTYPE, num_stages: int = 2, pointers: frozenset[str] = frozenset(),
                   maxnreg: int | None = None):
    """Compiles one config for sm_90; returns Triton's compiled kernel (`.metadata.shared`, `.asm["ptx"]`).
    `aligned`: pointers and the specialised integers divisible by 16, as the launcher finds them;
    `input_dtype`: the pointers that are bf16 when `bf16` is (the rest are fp32); `pointers`: the pointer
    arguments besides those named `*_ptr`; `maxnreg`: the registers per thread ptxas may use (a config's
    `maxnreg`), unbounded (255) by default."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kernels._triton import jit_function

    fn = jit_function(kernel)
    wanted = {p.name for p in fn.params if p.is_constexpr}
    consts = {name: value for name, value in constexprs.items() if name in wanted}
    missing = wanted - set(consts)
    if missing:
        raise ValueError(f"{fn.__name__}: no value for {sorted(missing)}")
    signature, attrs = {}, {}
    for i, param in enumerate(fn.params):
        name = param.name
        if name in consts:
            signature[name] = "constexpr"
        elif name.endswith("_ptr") or name in pointers:
            signature[name] = "*bf16" if bf16 and name in input_dtype else "*fp32"
        else:
            signature[name] = "fp32" if name == "scale" else "i32"
        if aligned and name not in consts and name != "scale" and not param.do_not_specialize:
            attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=fn, signature=signature, constexprs=consts, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": num_warps, "num_stages": num_stages}
                          | ({"maxnreg": maxnreg} if maxnreg else {}))


# what --sass counts of a kernel's instructions, by opcode
SASS_KINDS = {"fp32": ("FADD", "FMUL", "FFMA"), "shuffles": ("SHFL",), "ex2 and other MUFU": ("MUFU",),
              "shared": ("LDS", "STS", "LDSM", "STSM"), "local (spills)": ("LDL", "STL"),
              "global": ("LDG", "STG", "REDG", "ATOMG", "RED", "ATOM")}


def triton_bin() -> Path:
    """The folder of the CUDA tools bundled with Triton (ptxas, nvdisasm)."""
    import triton

    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin"


def sass_counts(cubin: bytes) -> collections.Counter:
    """Instructions of one compiled kernel by opcode, from the nvdisasm bundled with Triton."""
    nvdisasm = triton_bin() / "nvdisasm"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        sass = subprocess.run([str(nvdisasm), "-c", str(path)], capture_output=True, text=True, check=True).stdout
    ops = collections.Counter()
    for line in sass.splitlines():  # "/*0130*/  @!P0 FFMA.FTZ R3, ..." -> FFMA
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
        if m:
            ops[m.group(1)] += 1
    return ops


def ptxas_usage(ptx: str) -> tuple[int, int]:
    """(registers per thread, bytes spilled) of one kernel's PTX, from the ptxas bundled with Triton."""
    bin_dir = triton_bin()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        errors = []
        for name in ("ptxas-blackwell", "ptxas"):  # the one whose PTX version matches Triton's output
            if not (bin_dir / name).exists():
                continue
            run = subprocess.run([str(bin_dir / name), "-v", "--gpu-name=sm_90a", str(src), "-o", str(Path(tmp) / "k")],
                                 capture_output=True, text=True)
            used = re.search(r"Used (\d+) registers", run.stderr)
            if run.returncode == 0 and used:
                spills = re.search(r"(\d+) bytes spill stores", run.stderr)
                return int(used.group(1)), int(spills.group(1)) if spills else 0
            errors.append(f"{name}: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}")
    raise RuntimeError("no bundled ptxas assembled the PTX (" + "; ".join(errors) + ")")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--op", choices=tuple(OPS), default="delta",
                    help=f"the gated delta rule's kernels, Mamba-2's SSD ({', '.join(SSD_KERNELS)}; tiles "
                         f"(BL, BN, BP) {SSD_TILES}, z and D present), xLSTM's mLSTM (tiles (BL, BK, BV) "
                         f"{MLSTM_TILES}), Mamba-1's selective scan (tiles (BT, BD, BN) {SCAN_TILES}) or the causal "
                         f"conv1d (tiles (BT, BC) {CONV_TILES}); for the last two 'bf16' means bf16 inputs")
    ap.add_argument("--smoke", action="store_true", help="one tile set, bf16 products, 4 warps")
    ap.add_argument("--registers", action="store_true", help="also each config's registers and spills (ptxas -v)")
    ap.add_argument("--sass", action="store_true", help="also each config's instructions by kind (nvdisasm)")
    ap.add_argument("--kernels", help="comma-separated kernel names (default: every kernel of the op)")
    ap.add_argument("--warps", default="2,4,8", help="comma-separated warp counts")
    ap.add_argument("--tiles", help=f"comma-separated indices into {TILES} (CHANNEL, BL, BK), with --op ssd "
                                    f"into {SSD_TILES} (BL, BN, BP), with --op mlstm into {MLSTM_TILES} (BL, BK, BV), "
                                    f"with --op selective_scan into {SCAN_TILES} (BT, BD, BN), with --op conv1d into "
                                    f"{CONV_TILES} (BT, BC); default: all")
    ap.add_argument("--bf16-only", action="store_true", help="bf16 products only")
    ap.add_argument("--set", default="", metavar="NAME=INT,...",
                    help="override the op's constexprs, e.g. --set HAS_Z=0,HAS_INIT=0 for Mamba-2's layer (no z, "
                         "no initial state)")
    ap.add_argument("--unaligned", action="store_true",
                    help="compile without the launcher's knowledge that pointers and H, K, V divide by 16")
    ap.add_argument("--stages", default="2", help="comma-separated numbers of pipeline stages")
    ap.add_argument("--maxnreg", default="0", help="comma-separated caps on registers per thread (a config's "
                                                     "maxnreg; 0: none)")
    ap.add_argument("--bv", default="64", help="comma-separated widths of V's tiles (BV) for the kernels that take one")
    ap.add_argument("--bkf", type=int, default=128,
                    help="the gated delta rule's whole width of K in the state kernels (BKF: K to a power of two)")
    ap.add_argument("--fla-src", help="a folder holding fla/ (the fla-core wheel unpacked): with --registers, also "
                                      "fla's chunk_gated_delta_rule_fwd_kernel_h_blockdim64 (its states kernel, a "
                                      "decay per head, K = V = 128, chunks of 64) at each BV and warp count")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    from kernels._triton import DOT_BF16, DOT_FP32

    op = OPS[args.op]
    module = importlib.import_module(op.module)
    names = args.kernels.split(",") if args.kernels else list(op.kernels)
    unknown = [k for k in names if k not in op.kernels]
    if unknown:
        raise SystemExit(f"unknown kernel {unknown[0]!r}; choose from {', '.join(op.kernels)}")
    if args.smoke:
        tiles, modes, warp_counts = op.tiles[:1], (DOT_BF16,), (4,)
    else:
        tiles = tuple(op.tiles[int(i)] for i in args.tiles.split(",")) if args.tiles else op.tiles
        modes = (DOT_BF16,) if args.bf16_only else (DOT_FP32, DOT_BF16)
        warp_counts = tuple(int(w) for w in args.warps.split(","))
    overrides = {k: int(v) for k, v in (kv.split("=") for kv in args.set.split(",") if kv)}
    caps = tuple(int(c) for c in args.maxnreg.split(","))
    stage_counts = (2,) if args.smoke else tuple(int(s) for s in args.stages.split(","))
    if args.registers:
        import triton

        print(f"registers per thread and bytes spilled, Triton {triton.__version__}'s PTX for sm_90a (the GPU "
              f"machine's Triton may differ)\n")
        print(f"| kernel | {op.tile_names} | products | inverse | BV | warps | stages | maxnreg | registers "
              f"| spilled bytes | shared bytes | compile s |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    elif args.sass:
        import triton

        print(f"SASS instructions per kernel, Triton {triton.__version__} for sm_90a (the GPU machine's Triton may "
              f"differ)\n")
        print(f"| kernel | {op.tile_names} | products | warps | instructions | "
              + " | ".join(SASS_KINDS) + " | most frequent |")
        print("|---|---|---|---:|---:|" + "---:|" * len(SASS_KINDS) + "---|")
    failed = 0
    for name in names:
        kernel, most = getattr(module, name), 0
        inverses = module.INVERSES.values() if name in INVERSE_KERNELS else (0,)
        bvs = [int(x) for x in args.bv.split(",")] if op.takes_bv else ("–",)
        for tile, mode, inverse, num_warps, BV, stages, cap in itertools.product(
                tiles, modes, inverses, warp_counts, bvs, stage_counts, caps):
            consts = op.consts(tile, mode, inverse, BV, args.bkf) | overrides
            try:
                start = time.perf_counter()
                compiled = compile_kernel(kernel, consts, num_warps, bf16=mode == DOT_BF16, aligned=not args.unaligned,
                                          input_dtype=op.input_dtype, num_stages=stages, pointers=op.pointers,
                                          maxnreg=cap)
                seconds = time.perf_counter() - start
                most = max(most, compiled.metadata.shared)
                if args.registers:
                    regs, spilled = ptxas_usage(compiled.asm["ptx"])
                    inv = inverse if name in INVERSE_KERNELS else "–"
                    print(f"| {name} | {', '.join(map(str, tile))} | {'bf16' if mode == DOT_BF16 else 'fp32'} | {inv} "
                          f"| {BV} | {num_warps} | {stages} | {cap or '–'} | {regs} | {spilled:,} "
                          f"| {compiled.metadata.shared:,} | {seconds:.1f} |", flush=True)
                elif args.sass:
                    ops = sass_counts(compiled.asm["cubin"])
                    kinds = " | ".join(f"{sum(ops[o] for o in opcodes):,}" for opcodes in SASS_KINDS.values())
                    top = ", ".join(f"{o} {n}" for o, n in ops.most_common(6))
                    print(f"| {name} | {', '.join(map(str, tile))} | {'bf16' if mode == DOT_BF16 else 'fp32'} "
                          f"| {num_warps} | {sum(ops.values()):,} | {kinds} | {top} |", flush=True)
            except Exception as e:  # report every failure, then exit 1
                failed += 1
                last = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                print(f"FAILED {name} {consts} warps={num_warps} stages={stages}: {last[:300]}")
        if not (args.registers or args.sass):
            print(f"{name}: compiled, up to {most:,} bytes of shared memory")
    if args.fla_src and args.registers:
        for num_warps, BV in itertools.product(warp_counts, [int(x) for x in args.bv.split(",")]):
            regs, spilled, shared = fla_states_usage(args.fla_src, BV, num_warps, aligned=not args.unaligned)
            print(f"| fla chunk_gated_delta_rule_fwd_kernel_h_blockdim64 | False, 64, – | bf16 | – | {BV} "
                  f"| {num_warps} | 2 | {regs} | {spilled:,} | {shared:,} | |", flush=True)
    if failed:
        raise SystemExit(f"{failed} configs failed to compile for sm_90")


def fla_states_usage(fla_src: str, BV: int, num_warps: int, aligned: bool) -> tuple[int, int, int]:
    """(registers, bytes spilled, shared bytes) of fla's states kernel compiled for sm_90a as its launcher would
    at B8 T2048 H16 K128 V128 in bf16 with a decay per head: the anchor beside `delta_fwd_kernel_states`."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from kernels._triton import jit_function

    sys.path.insert(0, fla_src)
    from fla.ops.common import chunk_delta_h

    fn = jit_function(chunk_delta_h.chunk_gated_delta_rule_fwd_kernel_h_blockdim64)  # under autotune and heuristics
    consts = dict(H=16, HV=16, K=128, V=128, BT=64, BV=BV, USE_G=True, USE_GK=False, USE_INITIAL_STATE=False,
                  STORE_FINAL_STATE=True, SAVE_NEW_VALUE=True, STATE_V_FIRST=False, IS_VARLEN=False,
                  gk=None, h0=None, cu_seqlens=None, chunk_offsets=None)  # absent: constexpr None, as launched
    consts = {k: v for k, v in consts.items() if k in fn.arg_names}
    signature, attrs = {}, {}
    for i, param in enumerate(fn.params):
        if param.name in consts:
            signature[param.name] = "constexpr"
        elif param.name == "T":
            signature[param.name] = "i32"
        else:
            signature[param.name] = "*fp32" if param.name in ("g", "ht") else "*bf16"
            if aligned:
                attrs[(i,)] = [["tt.divisibility", 16]]
    src = ASTSource(fn=fn, signature=signature, constexprs=consts, attrs=attrs)
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, "num_stages": 2})
    return (*ptxas_usage(compiled.asm["ptx"]), compiled.metadata.shared)


if __name__ == "__main__":
    main()
