#!/usr/bin/env bash
# Build mamba_ssm's CUDA selective scan (bf16 inputs, real A) as a plain shared library for sm_90, for
# benchmarks/kernels.py to time beside ours in the same run (--mamba-scan-so). Needs nvcc and the mamba-ssm
# source distribution; not torch's CUDA build: the kernels take torch's header-only types from the installed
# torch, and two stand-in headers (shim/) replace the ones that would link against libc10_cuda.
#
#     MAMBA_SSM_SDIST=/tmp/m/mamba_ssm-2.3.2.post1 bash benchmarks/scan_anchor/build.sh   # -> .anchors/selective_scan_anchor.so
#
# The sdist: MAMBA_SKIP_CUDA_BUILD=TRUE pip download --no-deps --no-build-isolation --no-binary :all: mamba-ssm,
# then untar it. Two of its files are compiled (the forward, the real backward) and a wrapper: 51 s on 2 cores
# (x86_64, nvcc 13.0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
src="${MAMBA_SSM_SDIST:?set MAMBA_SSM_SDIST to an unpacked mamba-ssm source distribution}/csrc/selective_scan"
out="${OUT_SO:-$root/.anchors/selective_scan_anchor.so}"
arch="${CUDA_ARCH:-90}"
[ -f "$src/selective_scan_fwd_kernel.cuh" ] || { echo "$src has no selective_scan_fwd_kernel.cuh: point MAMBA_SSM_SDIST at an unpacked mamba-ssm sdist" >&2; exit 1; }
command -v nvcc >/dev/null || { echo "no nvcc on PATH: install a CUDA toolkit (or pip's nvidia-cuda-nvcc) first" >&2; exit 1; }
torch_include="$(python3 -c 'import torch.utils.cpp_extension as e; print(e.include_paths()[0])' 2>/dev/null)" \
    || { echo "python3 cannot import torch (its headers hold the kernels' bf16 type): activate the project's environment" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
flags=(-O3 -std=c++17 -Xcompiler -fPIC --expt-relaxed-constexpr --expt-extended-lambda --use_fast_math
       -gencode "arch=compute_$arch,code=sm_$arch" -I "$here/shim" -I "$torch_include" -I "$src")
echo "compiling mamba_ssm's selective-scan forward and backward for sm_$arch with $(command -v nvcc) (about a minute on 2 cores)"
pids=()
for f in "$src/selective_scan_fwd_bf16.cu" "$src/selective_scan_bwd_bf16_real.cu" "$here/wrapper.cu"; do
    nvcc "${flags[@]}" -c "$f" -o "$tmp/$(basename "$f" .cu).o" &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || { echo "nvcc failed (its errors are above): is MAMBA_SSM_SDIST a mamba-ssm 2.x sdist, and nvcc 12 or newer?" >&2; exit 1; }
done
nvcc -shared -o "$out.tmp" "$tmp"/*.o -lcudart_static
mv "$out.tmp" "$out"
echo "built $out"
