// y = W x and Y = W X on vidcompress's runtime layouts: CSR rows of (column index, codebook symbol), and
// the relative layout further down. One warp per row; the codebook sits in shared memory; fp32 accumulation;
// warp-shuffle reduction. Loaded by cupy.RawModule (NVRTC); also compiled by nvcc in the test suite.

#define FULL_MASK 0xffffffffu
#define SPMM_TILE 8  // batch columns accumulated in registers per pass

extern __shared__ float shared_codebook[];  // sized at launch: the codebook's floats

// The whole block copies the codebook into shared memory once; every warp then reads it from there.
__device__ __forceinline__ void load_codebook(float* table, const float* __restrict__ codebook, int size) {
    for (int i = threadIdx.x; i < size; i += blockDim.x) table[i] = codebook[i];
    __syncthreads();
}

template <typename Column, typename Symbol>
__device__ void spmv_rows(const int* __restrict__ row_pointers, const Column* __restrict__ columns,
                          const Symbol* __restrict__ symbols, const float* __restrict__ codebook,
                          int codebook_size, const float* __restrict__ x, float* __restrict__ y, int rows) {
    float* table = shared_codebook;
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
    float* table = shared_codebook;
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

// ---------------------------------------------------------------------------------------------------------
// The relative layout (EIE-style): per row, 16-bit entries, low byte the column delta from the previous
// entry (the row starts at column -1), high byte the codebook symbol; symbol 0 is a filler (a gap of more
// than 255 columns) or the row's padding to a multiple of 4 entries (delta 0). Rows start on 8-byte
// boundaries, so each lane loads 4 entries at once; `group_pointers` counts 4-entry groups. Columns come
// back from a per-lane prefix sum over the 4 deltas and a warp-wide inclusive scan of the lane totals.
// 2 bytes per entry, against 3 per nonzero for the CSR layout above.

__device__ __forceinline__ int warp_inclusive_scan(int value, int lane) {
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
        const int other = __shfl_up_sync(FULL_MASK, value, offset);
        if (lane >= offset) value += other;
    }
    return value;
}

// Decodes one 4-entry group (as a uint2) into absolute columns and symbols; advances `base` for the warp.
__device__ __forceinline__ void decode_group(uint2 group, bool valid, int lane, int& base, int columns[4],
                                             int symbols[4]) {
    const unsigned int words[2] = {group.x, group.y};
    int position = 0;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const unsigned int entry = (words[e >> 1] >> ((e & 1) * 16)) & 0xFFFFu;
        position += valid ? (int)(entry & 0xFFu) : 0;
        columns[e] = position;
        symbols[e] = valid ? (int)(entry >> 8) : 0;
    }
    const int inclusive = warp_inclusive_scan(position, lane);
    const int offset = base + inclusive - position;
#pragma unroll
    for (int e = 0; e < 4; ++e) columns[e] += offset;
    base += __shfl_sync(FULL_MASK, inclusive, 31);
}

extern "C" __global__ void spmv_rel(const int* __restrict__ group_pointers, const uint2* __restrict__ groups,
                                    const float* __restrict__ codebook, int codebook_size,
                                    const float* __restrict__ x, float* __restrict__ y, int rows) {
    float* table = shared_codebook;
    load_codebook(table, codebook, codebook_size);
    const int lane = threadIdx.x & 31;
    const int warps = blockDim.x >> 5;
    for (int row = blockIdx.x * warps + (threadIdx.x >> 5); row < rows; row += gridDim.x * warps) {
        float sum = 0.0f;
        int base = -1;
        const int end = group_pointers[row + 1];
        for (int chunk = group_pointers[row]; chunk < end; chunk += 32) {
            const int k = chunk + lane;
            const bool valid = k < end;
            const uint2 group = valid ? __ldg(&groups[k]) : make_uint2(0u, 0u);
            int columns[4], symbols[4];
            decode_group(group, valid, lane, base, columns, symbols);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                if (symbols[e] != 0) sum += table[symbols[e]] * __ldg(&x[columns[e]]);
            }
        }
        for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_down_sync(FULL_MASK, sum, offset);
        if (lane == 0) y[row] = sum;
    }
}

// X is (columns, batch) row-major; Y is (rows, batch) row-major. The row is decoded once per batch tile.
extern "C" __global__ void spmm_rel(const int* __restrict__ group_pointers, const uint2* __restrict__ groups,
                                    const float* __restrict__ codebook, int codebook_size,
                                    const float* __restrict__ x, float* __restrict__ y, int rows, int batch) {
    float* table = shared_codebook;
    load_codebook(table, codebook, codebook_size);
    const int lane = threadIdx.x & 31;
    const int warps = blockDim.x >> 5;
    for (int row = blockIdx.x * warps + (threadIdx.x >> 5); row < rows; row += gridDim.x * warps) {
        const int begin = group_pointers[row];
        const int end = group_pointers[row + 1];
        for (int tile = 0; tile < batch; tile += SPMM_TILE) {
            const int width = min(SPMM_TILE, batch - tile);
            float sum[SPMM_TILE];
#pragma unroll
            for (int b = 0; b < SPMM_TILE; ++b) sum[b] = 0.0f;
            int base = -1;
            for (int chunk = begin; chunk < end; chunk += 32) {
                const int k = chunk + lane;
                const bool valid = k < end;
                const uint2 group = valid ? __ldg(&groups[k]) : make_uint2(0u, 0u);
                int columns[4], symbols[4];
                decode_group(group, valid, lane, base, columns, symbols);
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    if (symbols[e] == 0) continue;
                    const float value = table[symbols[e]];
                    const float* source = x + (long long)columns[e] * batch + tile;
#pragma unroll
                    for (int b = 0; b < SPMM_TILE; ++b) {
                        if (b < width) sum[b] += value * __ldg(&source[b]);
                    }
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
