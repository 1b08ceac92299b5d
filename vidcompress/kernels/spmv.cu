// y = W x and Y = W X on vidcompress's runtime layouts: CSR rows of (column index, codebook symbol), and
// the relative layout further down. The codebook sits in shared memory; fp32 accumulation; warp-shuffle
// reductions. Loaded by cupy.RawModule (NVRTC); also compiled by nvcc in the test suite.
//
// Batch 1 is memory-bound, so the CSR kernels aim at bytes in flight: `warps_per_row` warps (1, 2, 4 or
// 8, chosen by the host so that short matrices still fill the GPU) share a row, each lane issues UNROLL
// independent loads before it uses any, and the layout is read with streaming loads (evict-first) so
// that x keeps the caches. Partial sums of a row's warps meet in shared memory in a fixed order, so
// results are deterministic.

#define FULL_MASK 0xffffffffu
#define SPMM_TILE 8  // batch columns accumulated in registers per pass
#define UNROLL 4     // independent nonzeros per lane in flight
#define MAX_WARPS 32  // warps per block (up to 1024 threads)

extern __shared__ float shared_codebook[];  // sized at launch: the codebook's floats

// The whole block copies the codebook into shared memory once; every warp then reads it from there.
__device__ __forceinline__ void load_codebook(float* table, const float* __restrict__ codebook, int size) {
    for (int i = threadIdx.x; i < size; i += blockDim.x) table[i] = codebook[i];
    __syncthreads();
}

__device__ __forceinline__ float warp_sum(float value) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(FULL_MASK, value, offset);
    return value;
}

// x[column]: from shared memory when the block staged x there, else through the read-only cache.
template <bool SHARED_X>
__device__ __forceinline__ float fetch(const float* __restrict__ x, int column) {
    if constexpr (SHARED_X) {
        return x[column];
    } else {
        return __ldg(&x[column]);
    }
}

// Sum over k in [begin + first, end) step `stride` of table[symbols[k]] * x[columns[k]].
template <bool SHARED_X, typename Column, typename Symbol>
__device__ __forceinline__ float row_dot(int begin, int end, int first, int stride, const Column* __restrict__ columns,
                                         const Symbol* __restrict__ symbols, const float* table,
                                         const float* __restrict__ x) {
    float sum = 0.0f;
    int k = begin + first;
    for (; k + (UNROLL - 1) * stride < end; k += UNROLL * stride) {
        int column[UNROLL], symbol[UNROLL];
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) {
            column[u] = __ldcs(&columns[k + u * stride]);
            symbol[u] = __ldcs(&symbols[k + u * stride]);
        }
#pragma unroll
        for (int u = 0; u < UNROLL; ++u) sum += table[symbol[u]] * fetch<SHARED_X>(x, column[u]);
    }
    for (; k < end; k += stride) sum += table[__ldcs(&symbols[k])] * fetch<SHARED_X>(x, __ldcs(&columns[k]));
    return sum;
}

// Eight consecutive elements from an address aligned to eight of them, in one or two 16-byte (or one 8-byte)
// streaming loads.
__device__ __forceinline__ void load8(const unsigned char* p, int out[8]) {
    const uint2 w = __ldcs(reinterpret_cast<const uint2*>(p));
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        out[e] = (int)((w.x >> (8 * e)) & 0xFFu);
        out[4 + e] = (int)((w.y >> (8 * e)) & 0xFFu);
    }
}

__device__ __forceinline__ void load8(const unsigned short* p, int out[8]) {
    const uint4 w = __ldcs(reinterpret_cast<const uint4*>(p));
    const unsigned int words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int e = 0; e < 8; ++e) out[e] = (int)((words[e >> 1] >> ((e & 1) * 16)) & 0xFFFFu);
}

__device__ __forceinline__ void load8(const int* p, int out[8]) {
    const int4 a = __ldcs(reinterpret_cast<const int4*>(p));
    const int4 b = __ldcs(reinterpret_cast<const int4*>(p) + 1);
    out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w, out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
}

// row_dot with vector loads: lane `first` (of `stride` sharing the row) takes whole 8-nonzero groups that
// start on multiples of 8 in the layout's arrays (the host checks that both arrays start aligned), two
// groups in flight; the row's unaligned head and tail (under 8 nonzeros each) are single loads.
template <bool SHARED_X, typename Column, typename Symbol>
__device__ __forceinline__ float row_dot_vector(int begin, int end, int first, int stride,
                                                const Column* __restrict__ columns,
                                                const Symbol* __restrict__ symbols, const float* table,
                                                const float* __restrict__ x) {
    const int body_begin = (begin + 7) & ~7;
    const int body_end = end & ~7;
    if (body_begin >= body_end) return row_dot<SHARED_X>(begin, end, first, stride, columns, symbols, table, x);
    float sum = 0.0f;
    if (first < body_begin - begin) {
        const int k = begin + first;
        sum += table[__ldcs(&symbols[k])] * fetch<SHARED_X>(x, __ldcs(&columns[k]));
    }
    if (first < end - body_end) {
        const int k = body_end + first;
        sum += table[__ldcs(&symbols[k])] * fetch<SHARED_X>(x, __ldcs(&columns[k]));
    }
    const int last = body_end >> 3;
    int group = (body_begin >> 3) + first;
    for (; group + stride < last; group += 2 * stride) {
        int c0[8], s0[8], c1[8], s1[8];
        load8(columns + 8 * group, c0);
        load8(symbols + 8 * group, s0);
        load8(columns + 8 * (group + stride), c1);
        load8(symbols + 8 * (group + stride), s1);
#pragma unroll
        for (int e = 0; e < 8; ++e) sum += table[s0[e]] * fetch<SHARED_X>(x, c0[e]);
#pragma unroll
        for (int e = 0; e < 8; ++e) sum += table[s1[e]] * fetch<SHARED_X>(x, c1[e]);
    }
    if (group < last) {
        int c0[8], s0[8];
        load8(columns + 8 * group, c0);
        load8(symbols + 8 * group, s0);
#pragma unroll
        for (int e = 0; e < 8; ++e) sum += table[s0[e]] * fetch<SHARED_X>(x, c0[e]);
    }
    return sum;
}

// The whole block copies x (x_size floats) into shared memory at `staged`, 16 bytes at a time when aligned.
__device__ __forceinline__ void stage_vector(float* staged, const float* __restrict__ x, int x_size) {
    if ((reinterpret_cast<size_t>(x) & 15) == 0 && (reinterpret_cast<size_t>(staged) & 15) == 0) {
        const int quads = x_size >> 2;
        for (int i = threadIdx.x; i < quads; i += blockDim.x) {
            reinterpret_cast<float4*>(staged)[i] = __ldg(reinterpret_cast<const float4*>(x) + i);
        }
        for (int i = (quads << 2) + threadIdx.x; i < x_size; i += blockDim.x) staged[i] = __ldg(&x[i]);
    } else {
        for (int i = threadIdx.x; i < x_size; i += blockDim.x) staged[i] = __ldg(&x[i]);
    }
    __syncthreads();
}

// Block-stride loop over groups of rows; the loop bounds are uniform across the block (barriers are safe).
// SHARED_X: the block first stages x in shared memory after the codebook (the host checks that it fits), so
// the gathers x[column] hit shared memory instead of the L1 cache. VECTOR: row_dot_vector's 8-nonzero
// groups, whose lanes gather columns 8 nonzeros apart: through L1 that would touch up to 32 cache lines an
// instruction, so the vector kernel is only built with x staged. (Measured on an H200: staging alone gains
// under 3%, vector loads with it 5-20%.)
template <bool SHARED_X, bool VECTOR, typename Column, typename Symbol>
__device__ void spmv_rows(const int* __restrict__ row_pointers, const Column* __restrict__ columns,
                          const Symbol* __restrict__ symbols, const float* __restrict__ codebook,
                          int codebook_size, const float* __restrict__ x, float* __restrict__ y, int rows,
                          int warps_per_row, int x_size) {
    __shared__ float partial[MAX_WARPS];
    float* table = shared_codebook;
    const float* source = x;
    if constexpr (SHARED_X) {
        float* staged = shared_codebook + ((codebook_size + 3) & ~3);
        stage_vector(staged, x, x_size);
        source = staged;
    }
    load_codebook(table, codebook, codebook_size);
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int rows_per_block = (blockDim.x >> 5) / warps_per_row;
    const int member = warp % warps_per_row;
    for (int first_row = blockIdx.x * rows_per_block; first_row < rows; first_row += gridDim.x * rows_per_block) {
        const int row = first_row + warp / warps_per_row;
        float sum = 0.0f;
        if (row < rows) {
            const int first = member * 32 + lane, stride = warps_per_row * 32;
            if constexpr (VECTOR) {
                sum = row_dot_vector<SHARED_X>(row_pointers[row], row_pointers[row + 1], first, stride, columns,
                                               symbols, table, source);
            } else {
                sum = row_dot<SHARED_X>(row_pointers[row], row_pointers[row + 1], first, stride, columns, symbols,
                                        table, source);
            }
        }
        sum = warp_sum(sum);
        if (warps_per_row == 1) {
            if (lane == 0 && row < rows) y[row] = sum;
            continue;
        }
        if (lane == 0) partial[warp] = sum;
        __syncthreads();
        if (member == 0 && lane == 0 && row < rows) {
            float total = 0.0f;
            for (int m = 0; m < warps_per_row; ++m) total += partial[warp + m];
            y[row] = total;
        }
        __syncthreads();
    }
}

// X is (columns, batch) row-major; Y is (rows, batch) row-major.
template <typename Column, typename Symbol>
__device__ void spmm_rows(const int* __restrict__ row_pointers, const Column* __restrict__ columns,
                          const Symbol* __restrict__ symbols, const float* __restrict__ codebook,
                          int codebook_size, const float* __restrict__ x, float* __restrict__ y, int rows,
                          int batch, int warps_per_row) {
    __shared__ float partial[MAX_WARPS][SPMM_TILE];
    float* table = shared_codebook;
    load_codebook(table, codebook, codebook_size);
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int rows_per_block = (blockDim.x >> 5) / warps_per_row;
    const int member = warp % warps_per_row;
    const int stride = warps_per_row * 32;
    const bool vectors = (batch & 3) == 0;  // rows of X start 16-byte aligned: float4 loads
    for (int first_row = blockIdx.x * rows_per_block; first_row < rows; first_row += gridDim.x * rows_per_block) {
        const int row = first_row + warp / warps_per_row;
        const int begin = row < rows ? row_pointers[row] : 0;
        const int end = row < rows ? row_pointers[row + 1] : 0;
        for (int tile = 0; tile < batch; tile += SPMM_TILE) {
            const int width = min(SPMM_TILE, batch - tile);
            float sum[SPMM_TILE];
#pragma unroll
            for (int b = 0; b < SPMM_TILE; ++b) sum[b] = 0.0f;
            for (int k = begin + member * 32 + lane; k < end; k += stride) {
                const float value = table[__ldcs(&symbols[k])];
                const float* source = x + (long long)__ldcs(&columns[k]) * batch + tile;
                if (vectors && width == SPMM_TILE) {
                    const float4 low = __ldg(reinterpret_cast<const float4*>(source));
                    const float4 high = __ldg(reinterpret_cast<const float4*>(source) + 1);
                    sum[0] += value * low.x, sum[1] += value * low.y, sum[2] += value * low.z, sum[3] += value * low.w;
                    sum[4] += value * high.x, sum[5] += value * high.y, sum[6] += value * high.z,
                        sum[7] += value * high.w;
                } else {
#pragma unroll
                    for (int b = 0; b < SPMM_TILE; ++b) {
                        if (b < width) sum[b] += value * __ldg(&source[b]);
                    }
                }
            }
#pragma unroll
            for (int b = 0; b < SPMM_TILE; ++b) sum[b] = warp_sum(sum[b]);
            if (warps_per_row == 1) {
                if (lane == 0 && row < rows) {
                    for (int b = 0; b < width; ++b) y[(long long)row * batch + tile + b] = sum[b];
                }
                continue;
            }
            if (lane == 0) {
#pragma unroll
                for (int b = 0; b < SPMM_TILE; ++b) partial[warp][b] = sum[b];
            }
            __syncthreads();
            if (member == 0 && lane < width && row < rows) {
                float total = 0.0f;
                for (int m = 0; m < warps_per_row; ++m) total += partial[warp + m][lane];
                y[(long long)row * batch + tile + lane] = total;
            }
            __syncthreads();
        }
    }
}

#define VIDCOMPRESS_SPMV(NAME, SHARED_X, VECTOR, COLUMN, SYMBOL)                                                 \
    extern "C" __global__ void NAME(const int* row_pointers, const COLUMN* columns, const SYMBOL* symbols,         \
                                    const float* codebook, int codebook_size, const float* x, float* y, int rows,  \
                                    int warps_per_row, int x_size) {                                               \
        spmv_rows<SHARED_X, VECTOR, COLUMN, SYMBOL>(row_pointers, columns, symbols, codebook, codebook_size, x, y, \
                                                    rows, warps_per_row, x_size);                                  \
    }

// spmv_* reads x through the cache; spmv_sx_* stages x in shared memory; spmv_sxv_* also loads the layout
// in 8-nonzero vectors. (The cached-x kernels take x_size too, unused, so that every spmv_ kernel has one
// signature.)
#define VIDCOMPRESS_KERNELS(SUFFIX, COLUMN, SYMBOL)                                                              \
    VIDCOMPRESS_SPMV(spmv_##SUFFIX, false, false, COLUMN, SYMBOL)                                                \
    VIDCOMPRESS_SPMV(spmv_sx_##SUFFIX, true, false, COLUMN, SYMBOL)                                              \
    VIDCOMPRESS_SPMV(spmv_sxv_##SUFFIX, true, true, COLUMN, SYMBOL)                                              \
    extern "C" __global__ void spmm_##SUFFIX(const int* row_pointers, const COLUMN* columns,                     \
                                             const SYMBOL* symbols, const float* codebook, int codebook_size,     \
                                             const float* x, float* y, int rows, int batch, int warps_per_row) { \
        spmm_rows<COLUMN, SYMBOL>(row_pointers, columns, symbols, codebook, codebook_size, x, y, rows, batch,    \
                                  warps_per_row);                                                                \
    }

VIDCOMPRESS_KERNELS(u16_u8, unsigned short, unsigned char)
VIDCOMPRESS_KERNELS(u16_u16, unsigned short, unsigned short)
VIDCOMPRESS_KERNELS(i32_u8, int, unsigned char)
VIDCOMPRESS_KERNELS(i32_u16, int, unsigned short)

// ---------------------------------------------------------------------------------------------------------
// The relative layout (EIE-style): per row, 16-bit entries, low byte the column delta from the previous
// entry (the row starts at column -1), high byte the codebook symbol; symbol 0 is a filler (a gap of more
// than 255 columns) or the row's padding to a multiple of 8 entries (delta 0). Rows start on 16-byte
// boundaries, so each lane loads 8 entries at once; `group_pointers` counts 8-entry groups. Columns come
// back from a per-lane prefix sum over the 8 deltas and a warp-wide inclusive scan of the lane totals.
// 2 bytes per entry, against 3 per nonzero for the CSR layout above. One warp per row: a row's columns
// depend on everything before them in the row.

__device__ __forceinline__ int warp_inclusive_scan(int value, int lane) {
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
        const int other = __shfl_up_sync(FULL_MASK, value, offset);
        if (lane >= offset) value += other;
    }
    return value;
}

// Decodes one 8-entry group into absolute columns and symbols; advances `base` for the whole warp.
__device__ __forceinline__ void decode_group(uint4 group, int lane, int& base, int columns[8], int symbols[8]) {
    const unsigned int words[4] = {group.x, group.y, group.z, group.w};
    int position = 0;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
        const unsigned int entry = (words[e >> 1] >> ((e & 1) * 16)) & 0xFFFFu;
        position += (int)(entry & 0xFFu);
        columns[e] = position;
        symbols[e] = (int)(entry >> 8);
    }
    const int inclusive = warp_inclusive_scan(position, lane);
    const int offset = base + inclusive - position;
#pragma unroll
    for (int e = 0; e < 8; ++e) columns[e] += offset;
    base += __shfl_sync(FULL_MASK, inclusive, 31);
}

__device__ __forceinline__ uint4 load_group(const uint4* __restrict__ groups, int k, int end) {
    return k < end ? __ldcs(&groups[k]) : make_uint4(0u, 0u, 0u, 0u);  // a zero group: no columns, no symbols
}

extern "C" __global__ void spmv_rel(const int* __restrict__ group_pointers, const uint4* __restrict__ groups,
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
        int chunk = group_pointers[row];
        uint4 next = load_group(groups, chunk + lane, end);
        for (; chunk < end; chunk += 32) {
            const uint4 group = next;
            next = load_group(groups, chunk + 32 + lane, end);  // the next chunk's load overlaps this one's work
            int columns[8], symbols[8];
            decode_group(group, lane, base, columns, symbols);
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                if (symbols[e] != 0) sum += table[symbols[e]] * __ldg(&x[columns[e]]);
            }
        }
        sum = warp_sum(sum);
        if (lane == 0) y[row] = sum;
    }
}

// X is (columns, batch) row-major; Y is (rows, batch) row-major. The row is decoded once per batch tile.
extern "C" __global__ void spmm_rel(const int* __restrict__ group_pointers, const uint4* __restrict__ groups,
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
                int columns[8], symbols[8];
                decode_group(load_group(groups, chunk + lane, end), lane, base, columns, symbols);
#pragma unroll
                for (int e = 0; e < 8; ++e) {
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
            for (int b = 0; b < SPMM_TILE; ++b) sum[b] = warp_sum(sum[b]);
            if (lane == 0) {
                for (int b = 0; b < width; ++b) y[(long long)row * batch + tile + b] = sum[b];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// A convolution straight from the CSR layout, no im2col (the geometry: vidcompress/kernels/conv_plan.py).
// Per sample the padded input, split into phases when strided, is one flat array; the output of channel
// `row` is computed on a grid of `length` positions, and each nonzero (channel, tap) adds value *
// x[table[column] + p] to position p: consecutive threads take consecutive positions, so every load of x
// is coalesced, and all output channels read the same input through L2. A block takes CONV_PER_THREAD x
// blockDim.x positions of one output channel of one sample (grid: positions, channels, samples) and walks
// the row's nonzeros, staged CONV_CHUNK at a time in shared memory (value, offset); each thread keeps
// its positions' sums in registers and writes them once.

#define CONV_PER_THREAD 4
#define CONV_CHUNK 256

template <typename Column, typename Symbol>
__device__ void conv_rows(const int* __restrict__ row_pointers, const Column* __restrict__ columns,
                          const Symbol* __restrict__ symbols, const float* __restrict__ codebook, int codebook_size,
                          const long long* __restrict__ table, const float* __restrict__ x, float* __restrict__ out,
                          int rows, long long sample_size, long long plane, long long length) {
    float* book = shared_codebook;
    __shared__ float values[CONV_CHUNK];
    __shared__ long long offsets[CONV_CHUNK];
    load_codebook(book, codebook, codebook_size);
    const int row = blockIdx.y;
    const long long sample = blockIdx.z;
    const float* __restrict__ source = x + sample * sample_size;
    const long long first = (long long)blockIdx.x * blockDim.x * CONV_PER_THREAD + threadIdx.x;
    float sum[CONV_PER_THREAD];
#pragma unroll
    for (int j = 0; j < CONV_PER_THREAD; ++j) sum[j] = 0.0f;
    const int begin = row_pointers[row];
    const int end = row_pointers[row + 1];
    for (int chunk = begin; chunk < end; chunk += CONV_CHUNK) {
        const int count = min(CONV_CHUNK, end - chunk);
        for (int i = threadIdx.x; i < count; i += blockDim.x) {
            values[i] = book[symbols[chunk + i]];
            offsets[i] = table[columns[chunk + i]];
        }
        __syncthreads();
        for (int i = 0; i < count; ++i) {
            const float value = values[i];
            const float* __restrict__ shifted = source + offsets[i];
#pragma unroll
            for (int j = 0; j < CONV_PER_THREAD; ++j) {
                const long long p = first + (long long)j * blockDim.x;
                if (p < length) sum[j] += value * __ldg(&shifted[p]);
            }
        }
        __syncthreads();  // the chunk is read by every thread before the next one overwrites it
    }
    float* __restrict__ target = out + (sample * rows + row) * plane;
#pragma unroll
    for (int j = 0; j < CONV_PER_THREAD; ++j) {
        const long long p = first + (long long)j * blockDim.x;
        if (p < length) target[p] = sum[j];
    }
}

#define VIDCOMPRESS_CONV(SUFFIX, COLUMN, SYMBOL)                                                                 \
    extern "C" __global__ void conv_##SUFFIX(const int* row_pointers, const COLUMN* columns,                     \
                                             const SYMBOL* symbols, const float* codebook, int codebook_size,     \
                                             const long long* table, const float* x, float* out, int rows,        \
                                             long long sample_size, long long plane, long long length) {          \
        conv_rows<COLUMN, SYMBOL>(row_pointers, columns, symbols, codebook, codebook_size, table, x, out, rows,   \
                                  sample_size, plane, length);                                                   \
    }

VIDCOMPRESS_CONV(u16_u8, unsigned short, unsigned char)
VIDCOMPRESS_CONV(u16_u16, unsigned short, unsigned short)
VIDCOMPRESS_CONV(i32_u8, int, unsigned char)
VIDCOMPRESS_CONV(i32_u16, int, unsigned short)
