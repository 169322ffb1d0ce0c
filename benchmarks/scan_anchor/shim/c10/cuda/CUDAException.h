// Stand-in for torch's c10/cuda/CUDAException.h when mamba_ssm's selective-scan kernels are built without
// torch's CUDA libraries (benchmarks/scan_anchor/build.sh): its two macros, recording the first CUDA error for
// the wrapper (wrapper.cu) to return instead of throwing.
#pragma once
#include <cuda_runtime.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

extern cudaError_t hnas_scan_error;

#define C10_CUDA_CHECK(expr)                                              \
    do {                                                                  \
        cudaError_t hnas_e = (expr);                                      \
        if (hnas_e != cudaSuccess && hnas_scan_error == cudaSuccess) {    \
            hnas_scan_error = hnas_e;                                     \
        }                                                                 \
    } while (0)
#define C10_CUDA_KERNEL_LAUNCH_CHECK() C10_CUDA_CHECK(cudaGetLastError())
