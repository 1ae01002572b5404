/* Fused CPU kernels for the memory-bound part of InceptionTime's bf16 training step (see ops.py).
 *
 * Every tensor is bf16 in channels-last memory: `rows` rows (batch x time) of C channels. Eager torch runs
 * BatchNorm, ReLU and their gradients as five passes over such a tensor, and the int16 max-pool's gradient as
 * about ten; here each is one pass, or two where batch statistics must be summed first. The arithmetic is in
 * float, sums in double; results are rounded to bf16 once (round to nearest even).
 *
 * Plain C called through ctypes: no Python or torch headers, so one build serves the CPU and CUDA torch
 * wheels alike. OpenMP splits rows over torch's threads (torch has loaded libgomp by the time this library
 * loads, and both use that one runtime). On x86-64 every row kernel is compiled for AVX-512, AVX2 and the
 * baseline, and the loader picks the CPU's best (GCC target_clones). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define ROW_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ROW_KERNEL
#endif

static inline float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t to_bf16(float f) { /* round to nearest even; values here are finite */
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* h as a float where keep is 1, else 0: a mask, not a branch, so that the loops vectorize */
static inline float kept(uint16_t h, int keep) {
    uint32_t u = ((uint32_t)h << 16) & -(uint32_t)keep;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* -- BatchNorm (batch statistics), then a skip connection's addition (optional), then ReLU ------------------
 * x is the concatenation of n_pieces tensors of rows x (members x width) each, member by member: a row of x is
 * [member 0: piece 0's width channels, piece 1's, ...; member 1: ...], C = n_pieces x members x width (the
 * Inception module's four branches, concatenated as the next grouped convolutions expect). The concatenation
 * is never written out: the kernels walk a row of x segment by segment, each segment being `width` channels
 * contiguous in one piece, and write x's gradient to the pieces' gradients the same way. With one piece, x is
 * that tensor: one segment of C channels per row. */

struct input {
    const uint16_t *const *pieces;
    int64_t n_pieces, members, width, C;
};

static struct input input_of(const uint16_t *const *pieces, int64_t n_pieces, int64_t members, int64_t C) {
    if (n_pieces == 1) members = 1; /* one segment per row */
    return (struct input){.pieces = pieces, .n_pieces = n_pieces, .members = members,
                          .width = C / (n_pieces * members), .C = C};
}

/* Row r of x, segment by segment: segment j = m n_pieces + p (channels j width ... (j + 1) width - 1) is
 * member m's part of piece p, at pieces[p] + at (and at the same place in p's gradient). Loops over m and
 * p: a division per segment would cost more than its arithmetic. */
#define FOR_SEGMENTS(x, r, p, c0, at)                                                       \
    for (int64_t m_ = 0, c0 = 0; m_ < (x)->members; m_++)                                   \
        for (int64_t p = 0, at = ((r) * (x)->members + m_) * (x)->width; p < (x)->n_pieces; \
             p++, c0 += (x)->width)

/* What a row's per-channel sums read besides x: the gradient dy and the skip connection's rows (backward
 * only; a row of zeros where there is none), and per channel a centre that x is taken from (forward: a shift
 * against cancellation; backward: the mean) and the BatchNorm's affine map scale x + offset. */
struct sums {
    struct input x;
    const uint16_t *dy, *skip;
    int64_t skip_stride; /* C, or 0: the one row of zeros */
    const float *center, *scale, *offset;
};

/* forward: s += x - shift, s2 += (x - shift)^2 */
ROW_KERNEL static void sum_row(const struct sums *in, int64_t r, float *restrict s, float *restrict s2) {
    FOR_SEGMENTS(&in->x, r, p, c0, at) {
        const uint16_t *restrict x = in->x.pieces[p] + at;
        const float *restrict shift = in->center + c0;
        float *restrict sj = s + c0, *restrict s2j = s2 + c0;
        for (int64_t k = 0; k < in->x.width; k++) {
            float d = from_bf16(x[k]) - shift[k];
            sj[k] += d;
            s2j[k] += d * d;
        }
    }
}

/* backward: s += g, s2 += g (x - mean), g = dy where the ReLU passed it */
ROW_KERNEL static void gradient_sums_row(const struct sums *in, int64_t r, float *restrict s,
                                         float *restrict s2) {
    FOR_SEGMENTS(&in->x, r, p, c0, at) {
        const uint16_t *restrict x = in->x.pieces[p] + at;
        const uint16_t *restrict dy = in->dy + r * in->x.C + c0, *restrict skip = in->skip + r * in->skip_stride + c0;
        const float *restrict mean = in->center + c0, *restrict scale = in->scale + c0;
        const float *restrict offset = in->offset + c0;
        float *restrict sj = s + c0, *restrict s2j = s2 + c0;
        for (int64_t k = 0; k < in->x.width; k++) {
            float xv = from_bf16(x[k]);
            float g = kept(dy[k], xv * scale[k] + offset[k] + from_bf16(skip[k]) > 0);
            sj[k] += g;
            s2j[k] += g * (xv - mean[k]);
        }
    }
}

/* Per-channel sums over all rows of what add_row sums in one. Each thread takes the same rows in every run and
 * sums blocks of them in float, each block's sums then added in double; the threads' sums are added in thread
 * order: the same bits every run, whatever thread finishes first. */
enum { SUM_BLOCK = 32 };

static void channel_sums(const struct sums *in, int64_t rows,
                         void (*add_row)(const struct sums *, int64_t, float *, float *), double *s, double *s2) {
    int64_t C = in->x.C;
    int threads = omp_get_max_threads();
    double *parts = calloc((size_t)threads * 2 * C, sizeof(double));
#pragma omp parallel num_threads(threads)
    {
        int thread = omp_get_thread_num(), team = omp_get_num_threads();
        double *ts = parts + (size_t)thread * 2 * C, *ts2 = ts + C;
        float *block = malloc(2 * C * sizeof(float)), *block2 = block + C;
        int64_t first = rows * thread / team, last = rows * (thread + 1) / team;
        for (int64_t start = first; start < last; start += SUM_BLOCK) {
            memset(block, 0, 2 * C * sizeof(float));
            int64_t end = start + SUM_BLOCK < last ? start + SUM_BLOCK : last;
            for (int64_t r = start; r < end; r++) add_row(in, r, block, block2);
            for (int64_t c = 0; c < C; c++) {
                ts[c] += block[c];
                ts2[c] += block2[c];
            }
        }
        free(block);
    }
    for (int t = 0; t < threads; t++)
        for (int64_t c = 0; c < C; c++) {
            s[c] += parts[(size_t)t * 2 * C + c];
            s2[c] += parts[(size_t)t * 2 * C + C + c];
        }
    free(parts);
}

ROW_KERNEL static void normalize_row(const struct input *in, int64_t r, const uint16_t *restrict skip,
                                     uint16_t *restrict y, const float *restrict scale,
                                     const float *restrict offset) {
    FOR_SEGMENTS(in, r, p, c0, at) {
        const uint16_t *restrict x = in->pieces[p] + at;
        for (int64_t k = 0; k < in->width; k++) {
            float v = from_bf16(x[k]) * scale[c0 + k] + offset[c0 + k] + from_bf16(skip[c0 + k]);
            y[c0 + k] = to_bf16(v > 0 ? v : 0);
        }
    }
}

/* dx (into dpieces), and where there is a skip connection its gradient dskip = g */
ROW_KERNEL static void input_gradient_row(const struct input *in, int64_t r, const uint16_t *restrict dy,
                                          const uint16_t *restrict skip, uint16_t *const *dpieces,
                                          uint16_t *restrict dskip, const float *restrict scale,
                                          const float *restrict offset, const float *restrict mean,
                                          const float *restrict mean_g, const float *restrict slope) {
    FOR_SEGMENTS(in, r, p, c0, at) {
        const uint16_t *restrict x = in->pieces[p] + at;
        uint16_t *restrict dx = dpieces[p] + at;
        for (int64_t k = 0, c = c0; k < in->width; k++, c++) {
            float xv = from_bf16(x[k]);
            float g = kept(dy[c], xv * scale[c] + offset[c] + from_bf16(skip[c]) > 0);
            dx[k] = to_bf16(scale[c] * g - mean_g[c] - (xv - mean[c]) * slope[c]);
            if (dskip) dskip[c] = to_bf16(g); /* exact: g is dy or 0 */
        }
    }
}

/* A row of zeros for the skip connection of a BatchNorm that has none. */
static uint16_t *zeros_unless(const uint16_t *skip, int64_t C) { return skip ? NULL : calloc(C, sizeof(uint16_t)); }

/* y = relu(scale x + offset + skip) per channel: a BatchNorm whose statistics are known (at inference, its
 * running statistics), then ReLU. skip may be NULL: none. */
void normalize_relu(const uint16_t *const *pieces, int64_t n_pieces, int64_t members, const uint16_t *skip,
                    uint16_t *y, int64_t rows, int64_t C, const float *scale, const float *offset) {
    struct input x = input_of(pieces, n_pieces, members, C);
    uint16_t *zeros = zeros_unless(skip, C);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) normalize_row(&x, r, skip ? skip + r * C : zeros, y + r * C, scale, offset);
    free(zeros);
}

/* y = relu(weight (x - mean) / sqrt(var + eps) + bias + skip) with the batch's mean and biased variance, which
 * it writes to mean and var. skip (a residual connection's other input) may be NULL: none. */
void batch_norm_relu(const uint16_t *const *pieces, int64_t n_pieces, int64_t members, const uint16_t *skip,
                     uint16_t *y, int64_t rows, int64_t C, const float *weight, const float *bias, double eps,
                     float *mean, float *var) {
    struct input x = input_of(pieces, n_pieces, members, C);
    double *s = calloc(C, sizeof(double)), *ss = calloc(C, sizeof(double));
    float *shift = malloc(C * sizeof(float)), *scale = malloc(C * sizeof(float)), *offset = malloc(C * sizeof(float));
    /* sums of x - shift, shift being the first row: E[x^2] - E[x]^2 without the cancellation of large means */
    FOR_SEGMENTS(&x, 0, p, c0, at)
        for (int64_t k = 0; k < x.width; k++) shift[c0 + k] = from_bf16(x.pieces[p][at + k]);
    struct sums in = {.x = x, .center = shift};
    channel_sums(&in, rows, sum_row, s, ss);
    for (int64_t c = 0; c < C; c++) {
        double m = s[c] / rows, v = ss[c] / rows - m * m;
        if (v < 0) v = 0; /* rounding */
        mean[c] = (float)(m + shift[c]);
        var[c] = (float)v;
        scale[c] = (float)(weight[c] / sqrt(v + eps));
        offset[c] = bias[c] - mean[c] * scale[c];
    }
    normalize_relu(pieces, n_pieces, members, skip, y, rows, C, scale, offset);
    free(s);
    free(ss);
    free(shift);
    free(scale);
    free(offset);
}

/* The gradients of batch_norm_relu from dy and its x, skip, mean and var: x's (into dpieces, shaped as
 * pieces), skip's (where skip is not NULL), and the sums that are dweight and dbias. With g = dy where the
 * ReLU passed it and xhat = (x - mean) / std:
 * dx = weight / std (g - mean(g) - xhat mean(g xhat)), dskip = g, dweight = sum(g xhat), dbias = sum(g). */
void batch_norm_relu_backward(const uint16_t *dy, const uint16_t *const *pieces, int64_t n_pieces,
                              int64_t members, const uint16_t *skip, uint16_t *const *dpieces, uint16_t *dskip,
                              int64_t rows, int64_t C, const float *weight, const float *bias, const float *mean,
                              const float *var, double eps, float *dweight, float *dbias) {
    struct input x = input_of(pieces, n_pieces, members, C);
    double *s = calloc(C, sizeof(double)), *sx = calloc(C, sizeof(double));
    float *scale = malloc(C * sizeof(float)), *offset = malloc(C * sizeof(float));
    float *mean_g = malloc(C * sizeof(float)), *slope = malloc(C * sizeof(float));
    for (int64_t c = 0; c < C; c++) {
        scale[c] = (float)(weight[c] / sqrt((double)var[c] + eps));
        offset[c] = bias[c] - mean[c] * scale[c];
    }
    uint16_t *zeros = zeros_unless(skip, C);
    struct sums in = {.x = x, .dy = dy, .skip = skip ? skip : zeros, .skip_stride = skip ? C : 0,
                      .center = mean, .scale = scale, .offset = offset};
    channel_sums(&in, rows, gradient_sums_row, s, sx);
    for (int64_t c = 0; c < C; c++) {
        double inv_var = 1.0 / ((double)var[c] + eps);
        dbias[c] = (float)s[c];
        dweight[c] = (float)(sx[c] * sqrt(inv_var));
        mean_g[c] = (float)(scale[c] * s[c] / rows);
        slope[c] = (float)(scale[c] * sx[c] * inv_var / rows);
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        input_gradient_row(&x, r, dy + r * C, skip ? skip + r * C : zeros, dpieces, dskip ? dskip + r * C : NULL,
                           scale, offset, mean, mean_g, slope);
    free(zeros);
    free(s);
    free(sx);
    free(scale);
    free(offset);
    free(mean_g);
    free(slope);
}

/* -- Max over 3 time steps ('same' length) of non-negative values --------------------------------------------
 * Non-negative floats order as their bits do, so the values are compared as int16. -0.0 (a ReLU may pass it
 * on) has the sign bit: it is read as 0. A series' ends read a row of -1, below every value. */

static inline int16_t as_order(int16_t v) { return v == INT16_MIN ? 0 : v; }

ROW_KERNEL static void max_pool_row(const int16_t *restrict a, const int16_t *restrict b,
                                    const int16_t *restrict c, int16_t *restrict out, int64_t C) {
    for (int64_t k = 0; k < C; k++) {
        int16_t m = as_order(a[k]) > as_order(b[k]) ? as_order(a[k]) : as_order(b[k]);
        out[k] = m > as_order(c[k]) ? m : as_order(c[k]);
    }
}

/* x[t] receives the gradient of each window whose first maximum it is: window t (x[t] in the middle), t+1
 * (x[t] first) and t-1 (x[t] last), the same rule as torch's max_pool2d; plus `add`, the gradient that x's
 * other consumers sent back, summed in float and rounded once. */
ROW_KERNEL static void max_pool_gradient_row(const int16_t *restrict xm2, const int16_t *restrict xm1,
                                             const int16_t *restrict x0, const int16_t *restrict xp1,
                                             const int16_t *restrict xp2, const uint16_t *restrict gm1,
                                             const uint16_t *restrict g0, const uint16_t *restrict gp1,
                                             const uint16_t *restrict add, uint16_t *restrict dx, int64_t C) {
    for (int64_t k = 0; k < C; k++) {
        int16_t v = as_order(x0[k]), m1 = as_order(xm1[k]), m2 = as_order(xm2[k]);
        int16_t p1 = as_order(xp1[k]), p2 = as_order(xp2[k]);
        float middle = kept(g0[k], (m1 < v) & (v >= p1));
        float first = kept(gp1[k], (v >= p1) & (v >= p2));
        float last = kept(gm1[k], (m2 < v) & (m1 < v));
        dx[k] = to_bf16(middle + first + last + from_bf16(add[k]));
    }
}

void max_pool3(const int16_t *x, int16_t *out, int64_t batch, int64_t length, int64_t C) {
    int16_t *none = malloc(C * sizeof(int16_t));
    for (int64_t k = 0; k < C; k++) none[k] = -1;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < batch; n++)
        for (int64_t t = 0; t < length; t++) {
            const int16_t *b = x + (n * length + t) * C;
            max_pool_row(t > 0 ? b - C : none, b, t + 1 < length ? b + C : none, out + (n * length + t) * C, C);
        }
    free(none);
}

/* dx = the max-pool's gradient from g, plus add (NULL: nothing to add) */
void max_pool3_backward(const int16_t *x, const uint16_t *g, const uint16_t *add, uint16_t *dx, int64_t batch,
                        int64_t length, int64_t C) {
    int16_t *none = malloc(C * sizeof(int16_t));
    uint16_t *zeros = calloc(C, sizeof(uint16_t)); /* the gradient of a window that does not exist; no add */
    for (int64_t k = 0; k < C; k++) none[k] = -1;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < batch; n++)
        for (int64_t t = 0; t < length; t++) {
            int64_t at = (n * length + t) * C;
            const int16_t *x0 = x + at;
            const uint16_t *g0 = g + at;
            max_pool_gradient_row(t >= 2 ? x0 - 2 * C : none, t >= 1 ? x0 - C : none, x0,
                                  t + 1 < length ? x0 + C : none, t + 2 < length ? x0 + 2 * C : none,
                                  t >= 1 ? g0 - C : zeros, g0, t + 1 < length ? g0 + C : zeros,
                                  add ? add + at : zeros, dx + at, C);
        }
    free(none);
    free(zeros);
}
