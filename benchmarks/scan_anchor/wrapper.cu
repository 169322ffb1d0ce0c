// A C interface to mamba_ssm's CUDA selective scan (bf16 inputs, real fp32 A), for `selective_scan_cuda.py`
// to call through ctypes: the anchor of benchmarks/kernels.py's selective-scan table, built from the
// mamba-ssm source distribution by build.sh without compiling against torch.
//
// Layouts as mamba_ssm's extension takes them, every tensor contiguous: u, delta, z, out, out_z, dout, du,
// ddelta, dz [B, D, L] bf16; A [D, N] fp32; B, C [B, G, N, L] bf16 (variable B and C); D, delta_bias [D]
// fp32; x [B, D, chunks, 2N] fp32 (the state at each chunk of 2048 tokens); dA [D, N], dB, dC [B, G, N, L],
// dD, ddelta_bias [D] fp32, zeroed by the caller (the kernels add into them).
#include <cstdint>
#include <cstring>

#include <cuda_runtime.h>
#include <c10/util/BFloat16.h>

#include "selective_scan.h"

cudaError_t hnas_scan_error = cudaSuccess;

template <typename input_t, typename weight_t>
void selective_scan_fwd_cuda(SSMParamsBase &params, cudaStream_t stream);
template <typename input_t, typename weight_t>
void selective_scan_bwd_cuda(SSMParamsBwd &params, cudaStream_t stream);

namespace {

constexpr int kChunk = 2048;  // tokens per chunk of the kernels' walk, as mamba_ssm's extension sets it

void set_forward(SSMParamsBase &p, int batch, int dim, int seqlen, int dstate, int groups, const void *u,
                 const void *delta, const void *A, const void *B, const void *C, const void *D,
                 const void *delta_bias, const void *z, void *out, void *out_z, void *x, bool softplus) {
    std::memset(&p, 0, sizeof(p));
    p.batch = batch;
    p.dim = dim;
    p.seqlen = seqlen;
    p.dstate = dstate;
    p.n_groups = groups;
    p.n_chunks = (seqlen + kChunk - 1) / kChunk;
    p.dim_ngroups_ratio = dim / groups;
    p.delta_softplus = softplus;
    p.is_variable_B = p.is_variable_C = true;
    // strides in elements, of contiguous tensors
    const uint64_t bdl = uint64_t(dim) * seqlen, gnl = uint64_t(groups) * dstate * seqlen;
    p.A_d_stride = dstate;
    p.A_dstate_stride = 1;
    p.B_batch_stride = p.C_batch_stride = gnl;
    p.B_group_stride = p.C_group_stride = uint64_t(dstate) * seqlen;
    p.B_dstate_stride = p.C_dstate_stride = seqlen;
    p.u_batch_stride = p.delta_batch_stride = p.out_batch_stride = bdl;
    p.u_d_stride = p.delta_d_stride = p.out_d_stride = seqlen;
    if (z != nullptr) {
        p.z_batch_stride = p.out_z_batch_stride = bdl;
        p.z_d_stride = p.out_z_d_stride = seqlen;
    }
    p.u_ptr = const_cast<void *>(u);
    p.delta_ptr = const_cast<void *>(delta);
    p.A_ptr = const_cast<void *>(A);
    p.B_ptr = const_cast<void *>(B);
    p.C_ptr = const_cast<void *>(C);
    p.D_ptr = const_cast<void *>(D);
    p.delta_bias_ptr = const_cast<void *>(delta_bias);
    p.z_ptr = const_cast<void *>(z);
    p.out_ptr = out;
    p.out_z_ptr = out_z;
    p.x_ptr = x;
}

int finish() {
    cudaError_t e = hnas_scan_error != cudaSuccess ? hnas_scan_error : cudaGetLastError();
    hnas_scan_error = cudaSuccess;
    return int(e);
}

}  // namespace

extern "C" {

// Both return 0, or the first CUDA error (a cudaError_t) that the launch met.
int hnas_scan_fwd(int batch, int dim, int seqlen, int dstate, int groups, const void *u, const void *delta,
                  const void *A, const void *B, const void *C, const void *D, const void *delta_bias,
                  const void *z, void *out, void *out_z, void *x, int softplus, void *stream) {
    SSMParamsBase p;
    set_forward(p, batch, dim, seqlen, dstate, groups, u, delta, A, B, C, D, delta_bias, z, out, out_z, x,
                softplus != 0);
    selective_scan_fwd_cuda<at::BFloat16, float>(p, static_cast<cudaStream_t>(stream));
    return finish();
}

int hnas_scan_bwd(int batch, int dim, int seqlen, int dstate, int groups, const void *u, const void *delta,
                  const void *A, const void *B, const void *C, const void *D, const void *delta_bias,
                  const void *z, const void *out, const void *x, const void *dout, void *du, void *ddelta,
                  void *dA, void *dB, void *dC, void *dD, void *ddelta_bias, void *dz, int softplus,
                  void *stream) {
    SSMParamsBwd p;
    // as mamba_ssm's extension without recomputing out_z: `out` stands where the forward's output was
    set_forward(p, batch, dim, seqlen, dstate, groups, u, delta, A, B, C, D, delta_bias, z,
                const_cast<void *>(z != nullptr ? out : dout), nullptr, const_cast<void *>(x), softplus != 0);
    const uint64_t bdl = uint64_t(dim) * seqlen, gnl = uint64_t(groups) * dstate * seqlen;
    p.dout_batch_stride = p.du_batch_stride = p.ddelta_batch_stride = bdl;
    p.dout_d_stride = p.du_d_stride = p.ddelta_d_stride = seqlen;
    p.dA_d_stride = dstate;
    p.dA_dstate_stride = 1;
    p.dB_batch_stride = p.dC_batch_stride = gnl;
    p.dB_group_stride = p.dC_group_stride = uint64_t(dstate) * seqlen;
    p.dB_dstate_stride = p.dC_dstate_stride = seqlen;
    if (z != nullptr) {
        p.dz_batch_stride = bdl;
        p.dz_d_stride = seqlen;
    }
    p.dout_ptr = const_cast<void *>(dout);
    p.du_ptr = du;
    p.ddelta_ptr = ddelta;
    p.dA_ptr = dA;
    p.dB_ptr = dB;
    p.dC_ptr = dC;
    p.dD_ptr = dD;
    p.ddelta_bias_ptr = ddelta_bias;
    p.dz_ptr = dz;
    selective_scan_bwd_cuda<at::BFloat16, float>(p, static_cast<cudaStream_t>(stream));
    return finish();
}

}  // extern "C"
