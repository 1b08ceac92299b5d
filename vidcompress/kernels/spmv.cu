// y = W x and Y = W X on vidcompress's runtime layout: CSR rows of (column index, codebook symbol).
// One warp per row; the codebook sits in shared memory; fp32 accumulation; warp-shuffle reduction.
// Loaded by cupy.RawModule (NVRTC); also compiled by nvcc in the test suite.

#define FULL_MASK 0xffffffffu
#define SPMM_TILE 8  // batch columns accumulated in registers per pass

// The whole block copies the codebook into shared memory once; every warp then reads it from there.
__device__ __forceinline__ void load_codebook(float* table, const float* __restrict__ codebook, int size) {
    for (int i = threadIdx.x; i < size; i += blockDim.x) table[i] = codebook[i];
    __syncthreads();
}

template <typename Column, typename Symbol>
__device__ void spmv_rows(const int* __restrict__ row_pointers, const Column* __restrict__ columns,
                          const Symbol* __restrict__ symbols, const float* __restrict__ codebook,
                          int codebook_size, const float* __restrict__ x, float* __restrict__ y, int rows) {
    extern __shared__ float table[];
    load_codebook(table, codebook, codebook_size);
    const int lane = threadIdx.x & 31;
    const int warps = blockDim.x >> 5;
    for (int row = blockIdx.x * warps + (threadIdx.x >> 5); row < rows; row += gridDim.x * warps) {
        float sum = 0.0f;
        const int end = row_pointers[row + 1];
        for (int k = row_pointers[row] + lane; k < end; k += 32) {
            sum += table[symbols[k]] * __ldg(&x[columns[k]]);
        }
        for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_down_sync(FULL_MASK, sum, offset);
        if (lane == 0) y[row] = sum;
    }
}

// X is (columns, batch) row-major; Y is (rows, batch) row-major.
template <typename Column, typename Symbol>
__device__ void spmm_rows(const int* __restrict__ row_pointers, const Column* __restrict__ columns,
                          const Symbol* __restrict__ symbols, const float* __restrict__ codebook,
                          int codebook_size, const float* __restrict__ x, float* __restrict__ y, int rows,
                          int batch) {
    extern __shared__ float table[];
    load_codebook(table, codebook, codebook_size);
    const int lane = threadIdx.x & 31;
    const int warps = blockDim.x >> 5;
    for (int row = blockIdx.x * warps + (threadIdx.x >> 5); row < rows; row += gridDim.x * warps) {
        const int begin = row_pointers[row];
        const int end = row_pointers[row + 1];
        for (int tile = 0; tile < batch; tile += SPMM_TILE) {
            const int width = min(SPMM_TILE, batch - tile);
            float sum[SPMM_TILE];
#pragma unroll
            for (int b = 0; b < SPMM_TILE; ++b) sum[b] = 0.0f;
            for (int k = begin + lane; k < end; k += 32) {
                const float value = table[symbols[k]];
                const float* source = x + (long long)columns[k] * batch + tile;
#pragma unroll
                for (int b = 0; b < SPMM_TILE; ++b) {
                    if (b < width) sum[b] += value * __ldg(&source[b]);
                }
            }
#pragma unroll
            for (int b = 0; b < SPMM_TILE; ++b) {
                for (int offset = 16; offset > 0; offset >>= 1) sum[b] += __shfl_down_sync(FULL_MASK, sum[b], offset);
            }
            if (lane == 0) {
                for (int b = 0; b < width; ++b) y[(long long)row * batch + tile + b] = sum[b];
            }
        }
    }
}

#define VIDCOMPRESS_KERNELS(SUFFIX, COLUMN, SYMBOL)                                                         \
    extern "C" __global__ void spmv_##SUFFIX(const int* row_pointers, const COLUMN* columns,                \
                                             const SYMBOL* symbols, const float* codebook, int codebook_size, \
                                             const float* x, float* y, int rows) {                          \
        spmv_rows<COLUMN, SYMBOL>(row_pointers, columns, symbols, codebook, codebook_size, x, y, rows);      \
    }                                                                                                        \
    extern "C" __global__ void spmm_##SUFFIX(const int* row_pointers, const COLUMN* columns,                \
                                             const SYMBOL* symbols, const float* codebook, int codebook_size, \
                                             const float* x, float* y, int rows, int batch) {               \
        spmm_rows<COLUMN, SYMBOL>(row_pointers, columns, symbols, codebook, codebook_size, x, y, rows, batch); \
    }

VIDCOMPRESS_KERNELS(u16_u8, unsigned short, unsigned char)
VIDCOMPRESS_KERNELS(u16_u16, unsigned short, unsigned short)
VIDCOMPRESS_KERNELS(i32_u8, int, unsigned char)
VIDCOMPRESS_KERNELS(i32_u16, int, unsigned short)
