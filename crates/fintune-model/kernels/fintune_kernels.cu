// Fused CUDA kernels of fintune-model (compiled by build.rs with nvcc under the `cuda`
// feature; sm_90 SASS plus compute_90 PTX for later GPUs).
//
// 1. fintune_sqnorm: squared L2 norms of many float32 or bfloat16 tensors in a few launches (apex-style
//    multi-tensor apply: each launch carries up to MAX_TENSORS tensor pointers and a map from
//    blocks to (tensor, chunk)); accumulation in double, one atomicAdd per block.
// 2. fintune_mean_pool_{fwd,bwd}_f32: masked mean pooling over the sequence axis, as
//    sentence-transformers computes it (count clamped at 1e-9), and its gradient.
// 3. fintune_adamw: the AdamW update of many float32 parameters in a few launches (the same
//    multi-tensor apply as 1; the update of kernels.rs's adamw_cpu, element by element),
//    where the update as tensor operations launched about ten kernels per parameter: 6.5 ms of
//    a 23 ms MiniLM step on an H200, against 2.1 ms for PyTorch's foreach AdamW. Under bfloat16
//    training it updates the float32 master copies from the bfloat16 gradients and writes the
//    bfloat16 weights in the same pass (otherwise a conversion, ten operations and a copy each).
//
// All entry points launch on the given stream and return a cudaError_t (0 = success).

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#define MAX_BLOCKS 320
#define CHUNK 65536
#define THREADS 256

// Which (tensor, chunk) each block of a multi-tensor launch works on.
struct BlockMap {
    unsigned char tensor[MAX_BLOCKS];
    int chunk[MAX_BLOCKS];
};

// The tensors of one multi-tensor launch (passed by value as a kernel argument; the largest
// list, AdamW's, is about 3 KB of the 4 KB an argument may take).
template <typename Entry, int MAX>
struct EntryList {
    Entry e[MAX];
};

// The multi-tensor apply shared by the kernels below (apex-style): tensor i of n (sizes[i]
// elements; empty ones skipped) becomes make(i), an entry of the launch's list, and its
// CHUNK-element chunks become blocks; a launch goes when the block map or the list is full. A
// tensor whose chunks do not all fit continues in the next launch as entry 0.
// launch(list, map, blocks) starts one kernel and returns cudaGetLastError().
template <typename Entry, int MAX, typename Make, typename Launch>
static cudaError_t multi_tensor_apply(const int64_t* sizes, int n, Make make, Launch launch) {
    EntryList<Entry, MAX> tl;
    BlockMap bm;
    int nt = 0, nb = 0;
    for (int i = 0; i < n; ++i) {
        if (sizes[i] <= 0) continue;
        tl.e[nt] = make(i);
        const int64_t chunks = (sizes[i] + CHUNK - 1) / CHUNK;
        for (int64_t c = 0; c < chunks; ++c) {
            bm.tensor[nb] = (unsigned char)nt;
            bm.chunk[nb] = (int)c;
            ++nb;
            const bool last_chunk = c == chunks - 1;
            if (nb == MAX_BLOCKS || (last_chunk && nt + 1 == MAX)) {
                const cudaError_t err = launch(tl, bm, nb);
                if (err != cudaSuccess) return err;
                nb = 0;
                if (last_chunk) {
                    nt = -1;  // every tensor of this list is done
                } else {
                    tl.e[0] = tl.e[nt];  // the current tensor continues in the next launch
                    nt = 0;
                }
            }
        }
        ++nt;
    }
    return nb > 0 ? launch(tl, bm, nb) : cudaSuccess;
}

__device__ __forceinline__ double warp_sum(double v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}

// A float32 tensor, or a bfloat16 one (the gradients of bfloat16 training).
struct SqnormEntry {
    const void* ptr;
    int64_t size;
    int out_index;
    int bf16;
};

#define MAX_SQNORM 48
typedef EntryList<SqnormEntry, MAX_SQNORM> SqnormList;

__global__ void sqnorm_kernel(SqnormList tl, BlockMap bm, double* out) {
    const SqnormEntry& e = tl.e[bm.tensor[blockIdx.x]];
    const int64_t start = (int64_t)bm.chunk[blockIdx.x] * CHUNK;
    const int64_t end = min(start + (int64_t)CHUNK, e.size);
    double acc = 0.0;
    if (e.bf16) {
        const __nv_bfloat16* p = (const __nv_bfloat16*)e.ptr;
        for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
            const double v = (double)__bfloat162float(p[i]);
            acc += v * v;
        }
    } else {
        const float* p = (const float*)e.ptr;
        for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
            const double v = (double)p[i];
            acc += v * v;
        }
    }
    __shared__ double partial[THREADS / 32];
    acc = warp_sum(acc);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (threadIdx.x < 32) {
        double v = threadIdx.x < (THREADS / 32) ? partial[threadIdx.x] : 0.0;
        v = warp_sum(v);
        if (threadIdx.x == 0) atomicAdd(&out[e.out_index], v);
    }
}

// ptrs[i] is float32, or bfloat16 where bf16[i] != 0.
extern "C" int fintune_sqnorm(int device, const void* const* ptrs, const unsigned char* bf16, const int64_t* sizes,
                              int n, double* out, cudaStream_t stream) {
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) return (int)err;
    err = cudaMemsetAsync(out, 0, sizeof(double) * (size_t)(n > 0 ? n : 0), stream);
    if (err != cudaSuccess) return (int)err;
    return (int)multi_tensor_apply<SqnormEntry, MAX_SQNORM>(
        sizes, n, [&](int i) { return SqnormEntry{ptrs[i], sizes[i], i, bf16[i] != 0}; },
        [&](const SqnormList& tl, const BlockMap& bm, int nb) {
            sqnorm_kernel<<<nb, THREADS, 0, stream>>>(tl, bm, out);
            return cudaGetLastError();
        });
}

// One parameter of a fused AdamW update: float32 parameter (or float32 master copy) and
// moments; a float32 or bfloat16 gradient; optionally the bfloat16 model weight that follows
// the master copy (written rounded to nearest even, as libtorch's copy_ rounds).
struct AdamWEntry {
    float* p;
    const void* g;
    float* m;
    float* v;
    __nv_bfloat16* copy;  // null: no bfloat16 copy
    int64_t size;
    float decay;  // 1 - lr wd
    float step;   // -lr / bc1
    int g_bf16;   // the gradient is bfloat16
};

#define MAX_ADAMW 24
typedef EntryList<AdamWEntry, MAX_ADAMW> AdamWList;

struct AdamWCommon {
    float w1;   // 1 - beta1
    float b2;   // beta2
    float w2;   // 1 - beta2
    float bc2;  // sqrt(1 - beta2^t)
    float eps;
};

__global__ void adamw_kernel(AdamWList tl, BlockMap bm, AdamWCommon c) {
    const AdamWEntry& e = tl.e[bm.tensor[blockIdx.x]];
    const int64_t start = (int64_t)bm.chunk[blockIdx.x] * CHUNK;
    const int64_t end = min(start + (int64_t)CHUNK, e.size);
    float* p = e.p;
    float* m = e.m;
    float* v = e.v;
    const float decay = e.decay, step = e.step;
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
        const float gi = e.g_bf16 ? __bfloat162float(((const __nv_bfloat16*)e.g)[i]) : ((const float*)e.g)[i];
        float pi = p[i] * decay;
        const float mi = m[i] + c.w1 * (gi - m[i]);
        const float vi = v[i] * c.b2 + c.w2 * gi * gi;
        pi += step * (mi / (sqrtf(vi) / c.bc2 + c.eps));
        p[i] = pi;
        m[i] = mi;
        v[i] = vi;
        if (e.copy != nullptr) e.copy[i] = __float2bfloat16_rn(pi);
    }
}

// g[i] is float32, or bfloat16 where g_bf16[i] != 0; copy[i] is null or the bfloat16 weight
// that receives the updated p[i].
extern "C" int fintune_adamw(int device, float* const* p, const void* const* g, const unsigned char* g_bf16,
                             float* const* m, float* const* v, __nv_bfloat16* const* copy, const int64_t* sizes,
                             const double* lr, const double* wd, int n, double beta1, double beta2, double eps,
                             double bc1, double bc2_sqrt, cudaStream_t stream) {
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) return (int)err;
    const AdamWCommon c = {(float)(1.0 - beta1), (float)beta2, (float)(1.0 - beta2), (float)bc2_sqrt,
                           (float)eps};
    return (int)multi_tensor_apply<AdamWEntry, MAX_ADAMW>(
        sizes, n,
        [&](int i) {
            return AdamWEntry{p[i],     g[i],
                              m[i],     v[i],
                              copy[i],  sizes[i],
                              (float)(1.0 - lr[i] * wd[i]), (float)(-(lr[i] / bc1)),
                              g_bf16[i] != 0};
        },
        [&](const AdamWList& tl, const BlockMap& bm, int nb) {
            adamw_kernel<<<nb, THREADS, 0, stream>>>(tl, bm, c);
            return cudaGetLastError();
        });
}

// out[b, h] = sum_l mask[b, l] x[b, l, h] / max(sum_l mask[b, l], 1e-9)
__global__ void mean_pool_fwd_kernel(const float* x, const int64_t* mask, float* out, int64_t L, int64_t H) {
    const int64_t b = blockIdx.x;
    const int64_t h = (int64_t)blockIdx.y * blockDim.x + threadIdx.x;
    __shared__ float count;
    if (threadIdx.x == 0) {
        float c = 0.f;
        for (int64_t l = 0; l < L; ++l) c += (float)mask[b * L + l];
        count = fmaxf(c, 1e-9f);
    }
    __syncthreads();
    if (h >= H) return;
    float acc = 0.f;
    for (int64_t l = 0; l < L; ++l) {
        if (mask[b * L + l] != 0) acc += x[(b * L + l) * H + h] * (float)mask[b * L + l];
    }
    out[b * H + h] = acc / count;
}

// grad_x[b, l, h] = mask[b, l] grad_out[b, h] / max(sum_l mask[b, l], 1e-9)
// One block per (l, b) with its threads along h, so a batch of B rows fills B x L blocks (one
// block per row left most of an H200's 132 multiprocessors idle and was slower than libtorch's
// broadcast; measured on the device). Each block sums its row's mask with a block reduction.
__global__ void mean_pool_bwd_kernel(const float* g, const int64_t* mask, float* gx, int64_t L, int64_t H) {
    const int64_t l = blockIdx.x;
    const int64_t b = blockIdx.y;
    double c = 0.0;
    for (int64_t i = threadIdx.x; i < L; i += blockDim.x) c += (double)mask[b * L + i];
    __shared__ double partial[THREADS / 32];
    __shared__ float count;
    c = warp_sum(c);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = c;
    __syncthreads();
    if (threadIdx.x < 32) {
        double v = threadIdx.x < (THREADS / 32) ? partial[threadIdx.x] : 0.0;
        v = warp_sum(v);
        if (threadIdx.x == 0) count = fmaxf((float)v, 1e-9f);
    }
    __syncthreads();
    const float m = (float)mask[b * L + l];
    float* out = gx + (b * L + l) * H;
    const float* gb = g + b * H;
    for (int64_t h = threadIdx.x; h < H; h += blockDim.x) out[h] = m * gb[h] / count;
}

extern "C" int fintune_mean_pool_fwd_f32(int device, const float* x, const int64_t* mask, float* out, int64_t B,
                                         int64_t L, int64_t H, cudaStream_t stream) {
    if (B == 0 || H == 0) return 0;
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) return (int)err;
    dim3 grid((unsigned)B, (unsigned)((H + THREADS - 1) / THREADS));
    mean_pool_fwd_kernel<<<grid, THREADS, 0, stream>>>(x, mask, out, L, H);
    return (int)cudaGetLastError();
}

extern "C" int fintune_mean_pool_bwd_f32(int device, const float* g, const int64_t* mask, float* gx, int64_t B,
                                         int64_t L, int64_t H, cudaStream_t stream) {
    if (B == 0 || L == 0 || H == 0) return 0;
    cudaError_t err = cudaSetDevice(device);
    if (err != cudaSuccess) return (int)err;
    if (B > 65535) return (int)cudaErrorInvalidConfiguration;
    dim3 grid((unsigned)L, (unsigned)B);
    mean_pool_bwd_kernel<<<grid, THREADS, 0, stream>>>(g, mask, gx, L, H);
    return (int)cudaGetLastError();
}
