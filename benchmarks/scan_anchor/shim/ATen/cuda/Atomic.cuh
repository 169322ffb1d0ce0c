// Stand-in for torch's ATen/cuda/Atomic.cuh (benchmarks/scan_anchor/build.sh): the one overload that the
// real-valued backward uses.
#pragma once
#include <cuda_runtime.h>

__device__ __forceinline__ float gpuAtomicAdd(float *address, float value) { return atomicAdd(address, value); }
