/* Fused, threaded passes over many float32/float64 host buffers, for host_stats.py.
 *
 *   pattern_counts(arrays, counts, threads)
 *       counts[i, p] = how many 16-bit values of arrays[i] (bfloat16 as uint16, float16)
 *       have bit pattern p: one pass over memory, from which host_stats derives every
 *       figure of a 16-bit array exactly (a bfloat16 model is never converted).
 *
 *   moments(arrays, out, threads)
 *       out[i] = [finite, nan, inf, zeros, min, max, shift, s1, s2] for arrays[i]: counts of
 *       finite / NaN / Inf / zero values, min and max of the finite values (+inf/-inf when
 *       there are none), and s1 = sum(x - shift), s2 = sum((x - shift)^2) over the finite
 *       values, where shift is the array's first value (0 when that is not finite).
 *   histograms(arrays, edges, clean, bins, clipped, counts, threads)
 *       counts[i, b] = finite values of arrays[i] in bin b of edges[i]: numpy.histogram's
 *       rule, [e_b, e_b+1) with the last bin closed; values outside [e_0, e_bins] are left
 *       out (that happens only when clipped).  clean[i] (a byte) says arrays[i] has no
 *       NaN/Inf, so the unchecked loop may run.
 *   stats(read, n, bins, out, edges, counts, done, threads)
 *       read(i), for i in range(n), gives array i (float32/float64, C-contiguous) or None
 *       (left out).  The threads start first and reduce each array as soon as it is read,
 *       while the caller's thread reads the next (under the GIL, the only Python it runs).
 *       Both passes at once: moments into out as above, and for each array that allows it
 *       (every value finite, at most FUSE_MAX values, numpy's edges of its own [min, max]
 *       fit for the bin rule below) numpy.histogram's edges into edges[i], its counts into
 *       counts[i] and done[i] = 1.  One task per such array runs its moment pass and then
 *       its histogram pass while the array is still in the cache, so the data is read from
 *       memory once (an array whose values are all equal: its one bin, filled at once).  Larger arrays (moments in chunks on every core once all are read) and
 *       the rest get done[i] = 0: the caller bins them with histograms().  A read that
 *       raises, or an array of another dtype, ends the call with that error once the
 *       threads have finished what they took.
 *
 * Precision.  The shifted sums give the variance as s2/n - (s1/n)^2 with a relative error
 * of at most about (n + 1) * 2^-53, because the shift is one of the values, so
 * (shift - mean)^2 <= n * variance; typically it is near 2^-53.  Bins are decided exactly:
 * a candidate bin comes from one subtract and one multiply in the data's own type, off by
 * at most 3 * 2^-24 relative (float32), so by 1.8e-7 * bins bins, plus 3e-8 bins for the
 * rounding of numpy's edges (non-coarse ranges); every value within (bins + 1) *
 * NEAR_EDGE_PER_BIN bins of a bin boundary (twice that) is re-binned by comparing it with
 * the edges, as doubles, as numpy does.  Each chunk writes its own partial result and
 * partials are merged in chunk order, so results do not depend on how the chunks were
 * spread over threads (nor, in stats(), on the order the arrays were read).  Compiled
 * without fast-math or FP contraction; the sums of squares take explicit fused
 * multiply-adds (one rounding per step instead of two) where the CPU has them (x86-64 with
 * FMA3, chosen when the module loads; ARM64), which frees the adders, the moment pass's
 * bottleneck: there the last bits of s2 differ from a CPU without them, within the bound.
 *
 * Edges.  numpy.linspace(lo, hi, bins + 1) is edge[i] = i * ((hi - lo) / bins) + lo and
 * edge[bins] = hi, each operation rounded once (numpy 1.x and 2.x); stats() makes them the
 * same way, with numpy.histogram's +-0.5 around a constant, and leaves to Python (done = 0)
 * every range where numpy takes another branch (a zero step, a non-finite width) or where
 * host_stats would bin value by value (edges coarser than COARSE_EDGES).  Otherwise Python
 * computes everything between the passes (means, numpy's range rules, the edges with
 * numpy.linspace) and builds the results; this file only streams the data.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32)
#include <pthread.h>
#define HAVE_THREADS 1
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define FMA_DISPATCH 1 /* moment pass: fused multiply-adds where the CPU has them */
#else
#define VECTOR_CLONES
#define FMA_DISPATCH 0
#endif
#if !FMA_DISPATCH && (defined(__FMA__) || defined(__aarch64__))
#define FMA_NATIVE 1   /* every CPU this build runs on has them */
#else
#define FMA_NATIVE 0
#endif

#define CHUNK ((Py_ssize_t)1 << 17) /* values per task */
#define BLOCK 2048                  /* values per histogram step (its scratch fits in L1) */
#define LANES 16                    /* independent accumulators in the vector loops */
#define MAX_FAST_BINS 1024
#define PAIR_MAX_BINS 80            /* (bins + 1)^2 pair counts fit in L1 (26 KB at 80) */
#define PAIR_MIN_VALUES 16384       /* fewer: adding up the pair table costs more than it saves */
#define NEAR_EDGE_PER_BIN 4e-7      /* tolerance in bins, per bin: twice the error bound */
#define MOMENT_FIELDS 9
#define FUSE_MAX ((Py_ssize_t)1 << 22) /* values: 16 MB of float32, kept in L3 between passes */
#define COARSE_EDGES 268435456.0    /* 2**28: host_stats.COARSE_EDGES */

typedef struct {
    const void *data;
    Py_ssize_t n;
    int is_double;
    double shift;
} Source;

typedef struct {
    int source;
    Py_ssize_t start, stop;
} Chunk;

typedef struct Job Job;

struct Job {
    const Source *sources;
    const Chunk *chunks;
    Py_ssize_t n_chunks;
    void (*run)(const Job *job, Py_ssize_t index);
    double *partial;          /* moments: MOMENT_FIELDS per chunk */
    int64_t *partial_counts;  /* histograms: bins per chunk */
    const double *edges;      /* histograms: bins + 1 per source */
    const unsigned char *clean;
    double *moments_out;      /* stats: MOMENT_FIELDS per source */
    double *edges_out;        /* stats: bins + 1 per source */
    int64_t *counts_out;      /* stats: bins per source */
    unsigned char *done;      /* stats: 1 where the source's histogram was made */
    int bins;
    int clipped;
    Py_ssize_t next;          /* the next chunk to take */
#ifdef HAVE_THREADS
    pthread_mutex_t lock;
#endif
};

static double value_at(const Source *s, Py_ssize_t i) {
    return s->is_double ? ((const double *)s->data)[i] : (double)((const float *)s->data)[i];
}

/* ---- the checked loops: any value may be NaN or Inf, or fall outside the edges ---- */

static void moments_checked(const Source *s, Py_ssize_t start, Py_ssize_t stop, double *out) {
    double lo = INFINITY, hi = -INFINITY, s1 = 0.0, s2 = 0.0;
    double finite = 0.0, nan = 0.0, inf = 0.0, zeros = 0.0;
    for (Py_ssize_t i = start; i < stop; i++) {
        double x = value_at(s, i);
        if (isfinite(x)) {
            double d = x - s->shift;
            finite += 1.0;
            zeros += (x == 0.0);
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
            s1 += d;
            s2 += d * d;
        } else if (isnan(x)) {
            nan += 1.0;
        } else {
            inf += 1.0;
        }
    }
    out[0] = finite; out[1] = nan; out[2] = inf; out[3] = zeros;
    out[4] = lo; out[5] = hi; out[6] = s->shift; out[7] = s1; out[8] = s2;
}

/* The bin of x given a candidate within a few bins of it: numpy's comparisons. */
static int exact_bin(double x, const double *edges, int bins, int b) {
    b = b < 0 ? 0 : (b > bins - 1 ? bins - 1 : b);
    while (b > 0 && x < edges[b]) b--;
    while (b < bins - 1 && x >= edges[b + 1]) b++;
    return b;
}

/* exact_bin of a pending value, remembering the last one's bin: a value repeated on an
 * edge (zeros when 0 is an edge: pruned weights; integer-valued weights) is placed once. */
static inline int pending_bin(double x, const double *edges, int bins, int guess,
                              double *memo_x, int *memo_b) {
    if (x == *memo_x) return *memo_b;
    *memo_x = x;
    return *memo_b = exact_bin(x, edges, bins, guess);
}

static void histogram_checked(const Source *s, Py_ssize_t start, Py_ssize_t stop, int clipped,
                              const double *edges, int bins, int64_t *counts) {
    const double lo = edges[0], hi = edges[bins], scale = bins / (hi - lo);
    memset(counts, 0, sizeof(int64_t) * bins);
    for (Py_ssize_t i = start; i < stop; i++) {
        double x = value_at(s, i);
        if (!isfinite(x) || (clipped && !(x >= lo && x <= hi))) continue;
        double f = (x - lo) * scale;
        counts[exact_bin(x, edges, bins, isfinite(f) ? (int)fmax(fmin(f, bins), -1.0) : 0)]++;
    }
}

/* ---- the fast loops: every value finite, every value inside the edges ---- */

/* Add a (bins + 1)^2 table of pair counts into counts: row a counts a value in bin a,
 * column c one in bin c; the pending row and column (index bins) were counted value by
 * value, so they are skipped. */
static void add_pair_table(const uint32_t *table, int bins, int64_t *counts) {
    const int32_t stride = bins + 1;
    for (int32_t a = 0; a < stride; a++)
        for (int32_t c = 0; c < stride; c++) {
            uint32_t k = table[a * stride + c];
            if (a < bins) counts[a] += k;
            if (c < bins) counts[c] += k;
        }
}

/* The moment pass of an array with no NaN or Inf (0 when it has one).  MULADD(a, b, c) is
 * a * b + c: one fused multiply-add where the CPU has them, else a multiply and an add; the
 * shift is taken as MULADD(x, 1, -shift), the same value as x - shift either way, so that
 * it runs beside the adds. */
#define MOMENTS_LOOP(T, NAME, MULADD)                                                        \
    double s1[LANES] = {0}, s2[LANES] = {0};                                                 \
    int32_t zeros[LANES] = {0};                                                              \
    T lo[LANES], hi[LANES];                                                                  \
    for (int j = 0; j < LANES; j++) lo[j] = hi[j] = x[0];                                    \
    Py_ssize_t i = 0;                                                                        \
    for (; i + LANES <= n; i += LANES) {                                                     \
        for (int j = 0; j < LANES; j++) {                                                    \
            T v = x[i + j];                                                                  \
            double d = MULADD((double)v, 1.0, -shift);                                       \
            s1[j] += d;                                                                      \
            s2[j] = MULADD(d, d, s2[j]);                                                     \
            zeros[j] += (v == 0);                                                            \
            lo[j] = v < lo[j] ? v : lo[j];                                                   \
            hi[j] = v > hi[j] ? v : hi[j];                                                   \
        }                                                                                    \
    }                                                                                        \
    for (; i < n; i++) {                                                                     \
        T v = x[i];                                                                          \
        double d = MULADD((double)v, 1.0, -shift);                                           \
        s1[0] += d;                                                                          \
        s2[0] = MULADD(d, d, s2[0]);                                                         \
        zeros[0] += (v == 0);                                                                \
        lo[0] = v < lo[0] ? v : lo[0];                                                       \
        hi[0] = v > hi[0] ? v : hi[0];                                                       \
    }                                                                                        \
    double sum1 = 0.0, sum2 = 0.0, zero_count = 0.0;                                         \
    for (int j = 0; j < LANES; j++) {                                                        \
        sum1 += s1[j];                                                                       \
        sum2 += s2[j];                                                                       \
        zero_count += zeros[j];                                                              \
        lo[0] = lo[j] < lo[0] ? lo[j] : lo[0];                                               \
        hi[0] = hi[j] > hi[0] ? hi[j] : hi[0];                                               \
    }                                                                                        \
    if (!isfinite(sum2) || !isfinite(sum1) || !isfinite((double)lo[0]) ||                   \
        !isfinite((double)hi[0]))                                                            \
        return 0; /* a NaN or Inf somewhere (or an overflow): the checked loop decides */    \
    out[0] = (double)n; out[1] = 0.0; out[2] = 0.0; out[3] = zero_count;                     \
    out[4] = (double)lo[0]; out[5] = (double)hi[0]; out[6] = shift;                          \
    out[7] = sum1; out[8] = sum2;                                                            \
    return 1;

#define SEPARATE_MULADD(a, b, c) ((a) * (b) + (c))

#if FMA_DISPATCH
#define MOMENTS_VARIANTS(T, NAME)                                                            \
__attribute__((target("avx512f,fma")))                                                       \
static int moments_avx512_##NAME(const T *x, Py_ssize_t n, double shift, double *out) {     \
    MOMENTS_LOOP(T, NAME, fma)                                                               \
}                                                                                            \
__attribute__((target("avx2,fma")))                                                          \
static int moments_avx2_##NAME(const T *x, Py_ssize_t n, double shift, double *out) {       \
    MOMENTS_LOOP(T, NAME, fma)                                                               \
}                                                                                            \
static int moments_plain_##NAME(const T *x, Py_ssize_t n, double shift, double *out) {      \
    MOMENTS_LOOP(T, NAME, SEPARATE_MULADD)                                                   \
}                                                                                            \
static int (*moments_fast_##NAME)(const T *, Py_ssize_t, double, double *) =                \
    moments_plain_##NAME;
#elif FMA_NATIVE
#define MOMENTS_VARIANTS(T, NAME)                                                            \
static int moments_fast_##NAME(const T *x, Py_ssize_t n, double shift, double *out) {       \
    MOMENTS_LOOP(T, NAME, fma)                                                               \
}
#else
#define MOMENTS_VARIANTS(T, NAME)                                                            \
static int moments_fast_##NAME(const T *x, Py_ssize_t n, double shift, double *out) {       \
    MOMENTS_LOOP(T, NAME, SEPARATE_MULADD)                                                   \
}
#endif

MOMENTS_VARIANTS(float, float32)
MOMENTS_VARIANTS(double, float64)

/* The moment pass with fused multiply-adds where this CPU has them (module init), or the
 * named variant; 0 when this CPU or build lacks it. */
static int choose_moments(const char *name) {
#if FMA_DISPATCH
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (name == NULL) name = avx512 ? "avx512" : (avx2 ? "avx2" : "plain");
    if (strcmp(name, "avx512") == 0 && avx512) {
        moments_fast_float32 = moments_avx512_float32;
        moments_fast_float64 = moments_avx512_float64;
    } else if (strcmp(name, "avx2") == 0 && avx2) {
        moments_fast_float32 = moments_avx2_float32;
        moments_fast_float64 = moments_avx2_float64;
    } else if (strcmp(name, "plain") == 0) {
        moments_fast_float32 = moments_plain_float32;
        moments_fast_float64 = moments_plain_float64;
    } else {
        return 0;
    }
    return 1;
#else
    return name == NULL || strcmp(name, FMA_NATIVE ? "fused" : "plain") == 0;
#endif
}

#define FAST_LOOPS(T, NAME)                                                                  \
/* Candidate bins; a value within `tol` bins of a boundary gets the extra bin `bins` instead \
 * (pending: histogram_fast re-bins it exactly). */                                         \
VECTOR_CLONES                                                                                \
static void candidate_bins_##NAME(const T *x, int n, T lo, T scale, T tol, int bins,        \
                                  int32_t *bin) {                                            \
    const T upper = (T)1 - tol;                                                              \
    for (int i = 0; i < n; i++) {                                                            \
        T f = (x[i] - lo) * scale;                                                           \
        int32_t b = (int32_t)f;                                                              \
        T frac = f - (T)b;                                                                   \
        b = b < 0 ? 0 : b;                                                                   \
        b = b > bins - 1 ? bins - 1 : b;                                                     \
        bin[i] = (frac < tol) | (frac > upper) ? bins : b;                                   \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* Candidate bins of x[i] and y[i] as one index into a (bins + 1)^2 table of pairs,       \
 * pair[i] = bin(x[i]) * (bins + 1) + bin(y[i]) (pending: bins, as above); returns how many \
 * of the 2n values are pending. */                                                         \
VECTOR_CLONES                                                                                \
static int candidate_pairs_##NAME(const T *x, const T *y, int n, T lo, T scale, T tol,      \
                                  int bins, int32_t *pair) {                                 \
    const T upper = (T)1 - tol;                                                              \
    const int32_t stride = bins + 1;                                                         \
    int pending = 0;                                                                         \
    for (int i = 0; i < n; i++) {                                                            \
        T f = (x[i] - lo) * scale, g = (y[i] - lo) * scale;                                  \
        int32_t b = (int32_t)f, c = (int32_t)g;                                              \
        T fb = f - (T)b, fc = g - (T)c;                                                      \
        b = b < 0 ? 0 : b;                                                                   \
        b = b > bins - 1 ? bins - 1 : b;                                                     \
        c = c < 0 ? 0 : c;                                                                   \
        c = c > bins - 1 ? bins - 1 : c;                                                     \
        int32_t pb = (fb < tol) | (fb > upper), pc = (fc < tol) | (fc > upper);              \
        pending += pb + pc;                                                                  \
        pair[i] = (pb ? bins : b) * stride + (pc ? bins : c);                                \
    }                                                                                        \
    return pending;                                                                          \
}                                                                                            \
                                                                                             \
/* histogram_fast for few bins: two values per count.  Scattered increments are what the   \
 * histogram costs (a load and a store each, whatever the arithmetic); counting the pair    \
 * (x[i], x[i + half]) of every block in one (bins + 1)^2 table halves them.  The pairs go  \
 * into `table` (added to, not reset: add_pair_table adds it up once per table), the       \
 * pending values into counts. */                                                           \
static void histogram_pairs_##NAME(const T *x, Py_ssize_t n, const double *edges, int bins, \
                                   T lo, T scale, T tol, uint32_t *table, int64_t *counts) { \
    const int32_t stride = bins + 1;                                                         \
    /* p * row_of >> 20 is p / stride for every p < stride^2 <= 81^2 (checked for each bins \
     * <= PAIR_MAX_BINS): no division in the loop that finds the pending values */         \
    const uint32_t row_of = (1u << 20) / (uint32_t)stride + 1;                               \
    int32_t pair[BLOCK / 2];                                                                 \
    double memo_x = NAN; /* the last pending value and its bin */                            \
    int memo_b = 0;                                                                          \
    for (Py_ssize_t start = 0; start < n; start += BLOCK) {                                  \
        const T *v = x + start;                                                              \
        int m = (int)(n - start < BLOCK ? n - start : BLOCK), half = m / 2, i = 0;           \
        int pending = candidate_pairs_##NAME(v, v + half, half, lo, scale, tol, bins, pair); \
        for (; i + 2 <= half; i += 2) {                                                      \
            table[pair[i]]++;                                                                \
            table[pair[i + 1]]++;                                                            \
        }                                                                                    \
        for (; i < half; i++) table[pair[i]]++;                                              \
        for (i = 0; pending > 0 && i < half; i++) { /* rare: most blocks have none */       \
            const uint32_t p = (uint32_t)pair[i], row = (p * row_of) >> 20;                  \
            if (row == (uint32_t)bins) {                                                     \
                counts[pending_bin((double)v[i], edges, bins, (int32_t)((v[i] - lo) * scale),     \
                                   &memo_x, &memo_b)]++;                                  \
                pending--;                                                                   \
            }                                                                                \
            if (p - row * (uint32_t)stride == (uint32_t)bins) {                              \
                counts[pending_bin((double)v[i + half], edges, bins,                            \
                                   (int32_t)((v[i + half] - lo) * scale), &memo_x, &memo_b)]++; \
                pending--;                                                                   \
            }                                                                                \
        }                                                                                    \
        for (i = 2 * half; i < m; i++) /* an odd block's last value */                       \
            counts[pending_bin((double)v[i], edges, bins, (int32_t)((v[i] - lo) * scale),     \
                              &memo_x, &memo_b)]++;                                       \
    }                                                                                        \
}                                                                                            \
                                                                                             \
/* The counts of values x[0:n] in the bins of edges into counts; 0 where the data's type    \
 * cannot scale the range (the checked loop must do it).  With a pair table (bins + 1)^2,   \
 * zeroed by the caller, a call that counts pairs returns 2: counts holds the values counted \
 * one by one and the pairs are in the table, for the caller's add_pair_table once it has  \
 * counted every piece of the array. */                                                     \
static int histogram_fast_##NAME(const T *x, Py_ssize_t n, const double *edges, int bins,   \
                                 int64_t *counts, uint32_t *pair_table) {                    \
    const double span = edges[bins] - edges[0];                                              \
    const T lo = (T)edges[0], scale = (T)(bins / span);                                      \
    if (bins > MAX_FAST_BINS || n > CHUNK || !isfinite((double)scale) ||                     \
        (double)lo != edges[0] || !isfinite((double)((T)edges[bins] - lo)) ||                \
        !((double)scale * span <= 2.0 * bins))                                               \
        return 0; /* a range the data's type cannot scale: the checked loop does it */      \
    const T tol = (T)((bins + 1) * NEAR_EDGE_PER_BIN);                                      \
    if (bins <= PAIR_MAX_BINS && n >= PAIR_MIN_VALUES) {                                     \
        uint32_t table[(PAIR_MAX_BINS + 1) * (PAIR_MAX_BINS + 1)];                           \
        memset(counts, 0, sizeof(int64_t) * bins);                                           \
        if (pair_table != NULL) {                                                            \
            histogram_pairs_##NAME(x, n, edges, bins, lo, scale, tol, pair_table, counts);  \
            return 2;                                                                        \
        }                                                                                    \
        memset(table, 0, sizeof(uint32_t) * (bins + 1) * (bins + 1));                       \
        histogram_pairs_##NAME(x, n, edges, bins, lo, scale, tol, table, counts);           \
        add_pair_table(table, bins, counts);                                                 \
        return 1;                                                                            \
    }                                                                                        \
    uint32_t sub[4][MAX_FAST_BINS + 1]; /* four interleaved counts; [bins]: pending */      \
    int32_t bin[BLOCK];                                                                      \
    uint32_t pending_done = 0;                                                               \
    double memo_x = NAN; /* the last pending value and its bin */                            \
    int memo_b = 0;                                                                          \
    memset(sub, 0, sizeof(sub));                                                             \
    for (Py_ssize_t start = 0; start < n; start += BLOCK) {                                  \
        const T *v = x + start;                                                              \
        int m = (int)(n - start < BLOCK ? n - start : BLOCK), i = 0;                         \
        candidate_bins_##NAME(v, m, lo, scale, tol, bins, bin);                              \
        for (; i + 4 <= m; i += 4) {                                                         \
            sub[0][bin[i]]++;                                                                \
            sub[1][bin[i + 1]]++;                                                            \
            sub[2][bin[i + 2]]++;                                                            \
            sub[3][bin[i + 3]]++;                                                            \
        }                                                                                    \
        for (; i < m; i++) sub[0][bin[i]]++;                                                 \
        uint32_t pending = sub[0][bins] + sub[1][bins] + sub[2][bins] + sub[3][bins];        \
        for (i = 0; pending_done < pending && i < m; i++) { /* rare: most blocks have none */\
            if (bin[i] == bins) {                                                            \
                int b = pending_bin((double)v[i], edges, bins, (int32_t)((v[i] - lo) * scale),  \
                                    &memo_x, &memo_b);                                        \
                sub[0][b]++;                                                                 \
                pending_done++;                                                              \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    for (int b = 0; b < bins; b++)                                                           \
        counts[b] = (int64_t)sub[0][b] + sub[1][b] + sub[2][b] + sub[3][b];                  \
    return 1;                                                                                \
}

FAST_LOOPS(float, float32)
FAST_LOOPS(double, float64)

/* The moments of values [start, stop) of a source into out (MOMENT_FIELDS). */
static void moments_of(const Source *s, Py_ssize_t start, Py_ssize_t stop, double *out) {
    Py_ssize_t n = stop - start;
    int done = s->is_double
        ? moments_fast_float64((const double *)s->data + start, n, s->shift, out)
        : moments_fast_float32((const float *)s->data + start, n, s->shift, out);
    if (!done) moments_checked(s, start, stop, out);
}

static void moments_chunk(const Job *job, Py_ssize_t index) {
    const Chunk *c = &job->chunks[index];
    moments_of(&job->sources[c->source], c->start, c->stop,
               job->partial + index * MOMENT_FIELDS);
}

static void histogram_chunk(const Job *job, Py_ssize_t index) {
    const Chunk *c = &job->chunks[index];
    const Source *s = &job->sources[c->source];
    const int bins = job->bins;
    const double *edges = job->edges + (Py_ssize_t)c->source * (bins + 1);
    int64_t *counts = job->partial_counts + index * bins;
    Py_ssize_t n = c->stop - c->start;
    if (!job->clipped && job->clean[c->source]) {
        int done = s->is_double
            ? histogram_fast_float64((const double *)s->data + c->start, n, edges, bins, counts,
                                     NULL)
            : histogram_fast_float32((const float *)s->data + c->start, n, edges, bins, counts,
                                     NULL);
        if (done) return;
    }
    histogram_checked(s, c->start, c->stop, job->clipped, edges, bins, counts);
}

/* Add one chunk's moments (as moments_chunk wrote them) into a source's running total. */
static void merge_moments(double *r, const double *p) {
    for (int f = 0; f < 4; f++) r[f] += p[f];
    r[4] = p[4] < r[4] ? p[4] : r[4];
    r[5] = p[5] > r[5] ? p[5] : r[5];
    r[7] += p[7];
    r[8] += p[8];
}

static void start_moments(double *r, double shift) {
    r[0] = r[1] = r[2] = r[3] = r[7] = r[8] = 0.0;
    r[4] = INFINITY;
    r[5] = -INFINITY;
    r[6] = shift;
}

/* numpy.histogram's edges for the data range [lo, hi] (see "Edges" above); 0 where this
 * file does not make them. */
static int numpy_edges(double lo, double hi, int bins, double *edges) {
    if (lo == hi) {
        lo -= 0.5;
        hi += 0.5;
    }
    const double width = hi - lo;
    if (!isfinite(width) || width / bins == 0.0) return 0;
    const double step = width / bins;
    for (int i = 0; i < bins; i++) edges[i] = (double)i * step + lo;
    edges[bins] = hi;
    for (int i = 0; i < bins; i++)
        if (!isfinite(edges[i]) || !(edges[i] < edges[i + 1])) return 0;
    return fmax(fabs(lo), fabs(hi)) / (hi - lo) * bins <= COARSE_EDGES;
}

/* stats(): one whole source, its moment pass then (when it can) its histogram pass. */
static void stats_task(const Job *job, Py_ssize_t index) {
    const Chunk *task = &job->chunks[index];
    const Source *s = &job->sources[task->source];
    const int bins = job->bins;
    double *r = job->moments_out + (Py_ssize_t)task->source * MOMENT_FIELDS;
    double *edges = job->edges_out + (Py_ssize_t)task->source * (bins + 1);
    int64_t *counts = job->counts_out + (Py_ssize_t)task->source * bins;
    double p[MOMENT_FIELDS];
    start_moments(r, s->shift);
    for (Py_ssize_t start = 0; start < s->n; start += CHUNK) {  /* chunk order, as py_moments
                                                                 * merges */
        moments_of(s, start, start + CHUNK < s->n ? start + CHUNK : s->n, p);
        merge_moments(r, p);
    }
    job->done[task->source] = 0;
    if (s->n == 0 || r[0] != (double)s->n || !numpy_edges(r[4], r[5], bins, edges)) return;
    memset(counts, 0, sizeof(int64_t) * bins);
    if (r[4] == r[5]) {  /* every value the same (a fresh bias, a BN scale): one bin holds all */
        counts[exact_bin(r[4], edges, bins, bins / 2)] = s->n;
        job->done[task->source] = 1;
        return;
    }
    int64_t part[MAX_FAST_BINS];
    int64_t *piece_counts = bins <= MAX_FAST_BINS ? part : NULL;
    /* one pair table for every piece of the array (at most FUSE_MAX / 2 pairs: no uint32
     * cell overflows), added up once at the end */
    uint32_t table[(PAIR_MAX_BINS + 1) * (PAIR_MAX_BINS + 1)];
    uint32_t *pair_table = bins <= PAIR_MAX_BINS ? table : NULL;
    int pairs_counted = 0;
    if (pair_table != NULL) memset(table, 0, sizeof(uint32_t) * (bins + 1) * (bins + 1));
    for (Py_ssize_t start = 0; start < s->n; start += CHUNK) {
        Py_ssize_t n = s->n - start < CHUNK ? s->n - start : CHUNK;
        int fast = piece_counts == NULL ? 0 : s->is_double
            ? histogram_fast_float64((const double *)s->data + start, n, edges, bins, part,
                                     pair_table)
            : histogram_fast_float32((const float *)s->data + start, n, edges, bins, part,
                                     pair_table);
        pairs_counted |= fast == 2;
        if (fast) {
            for (int b = 0; b < bins; b++) counts[b] += part[b];
        } else {  /* a range the data's type cannot scale: value by value, into counts */
            int64_t *exact = PyMem_RawMalloc(sizeof(int64_t) * bins);
            if (exact == NULL) return;  /* done stays 0: Python bins it */
            histogram_checked(s, start, start + n, 0, edges, bins, exact);
            for (int b = 0; b < bins; b++) counts[b] += exact[b];
            PyMem_RawFree(exact);
        }
    }
    if (pairs_counted) add_pair_table(table, bins, counts);
    job->done[task->source] = 1;
}

/* ---- threads ---- */

static Py_ssize_t take_chunk(Job *job) {
    Py_ssize_t index;
#ifdef HAVE_THREADS
    pthread_mutex_lock(&job->lock);
#endif
    index = job->next < job->n_chunks ? job->next++ : -1;
#ifdef HAVE_THREADS
    pthread_mutex_unlock(&job->lock);
#endif
    return index;
}

static void *worker(void *arg) {
    Job *job = (Job *)arg;
    for (Py_ssize_t index = take_chunk(job); index >= 0; index = take_chunk(job))
        job->run(job, index);
    return NULL;
}

/* Run job->run over every chunk on up to `threads` threads, the caller's among them. */
static void run_job(Job *job, int threads) {
    job->next = 0;
#ifdef HAVE_THREADS
    pthread_t helpers[63];
    int started = 0;
    if (threads > job->n_chunks) threads = (int)job->n_chunks;
    if (threads > 64) threads = 64;
    pthread_mutex_init(&job->lock, NULL);
    for (int t = 1; t < threads; t++)
        if (pthread_create(&helpers[started], NULL, worker, job) == 0) started++;
    worker(job);
    for (int t = 0; t < started; t++) pthread_join(helpers[t], NULL);
    pthread_mutex_destroy(&job->lock);
#else
    (void)threads;
    worker(job);
#endif
}

/* ---- buffers ---- */

typedef struct {
    PyObject *seq;
    Py_buffer *views;
    Source *sources;
    Chunk *chunks;
    Py_ssize_t n, n_opened, n_chunks;
} Inputs;

static void close_inputs(Inputs *in) {
    for (Py_ssize_t i = 0; i < in->n_opened; i++) PyBuffer_Release(&in->views[i]);
    PyMem_Free(in->views);
    PyMem_Free(in->sources);
    PyMem_Free(in->chunks);
    Py_XDECREF(in->seq);
}

/* Each of `arrays` (C-contiguous float32 or float64) as a Source, cut into chunks. */
static int open_inputs(PyObject *arrays, Inputs *in) {
    memset(in, 0, sizeof(*in));
    in->seq = PySequence_Fast(arrays, "arrays must be a list of float32/float64 arrays");
    if (in->seq == NULL) return -1;
    Py_ssize_t n = in->n = PySequence_Fast_GET_SIZE(in->seq);
    in->views = PyMem_Calloc(n + 1, sizeof(Py_buffer));
    in->sources = PyMem_Calloc(n + 1, sizeof(Source));
    if (in->views == NULL || in->sources == NULL) goto no_memory;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_buffer *view = &in->views[i];
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(in->seq, i), view,
                               PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
            goto fail;
        in->n_opened++;
        const char *format = view->format ? view->format : "B";
        if (strchr("<=@", format[0]) && format[0] != '\0') format++;
        Source *s = &in->sources[i];
        if (strcmp(format, "f") == 0 && view->itemsize == 4) {
            s->is_double = 0;
        } else if (strcmp(format, "d") == 0 && view->itemsize == 8) {
            s->is_double = 1;
        } else {
            PyErr_Format(PyExc_TypeError, "array %zd: expected float32 or float64, got '%s'",
                         i, view->format ? view->format : "B");
            goto fail;
        }
        s->data = view->buf;
        s->n = view->len / view->itemsize;
        s->shift = s->n ? value_at(s, 0) : 0.0;
        if (!isfinite(s->shift)) s->shift = 0.0;
        in->n_chunks += (s->n + CHUNK - 1) / CHUNK;
    }
    in->chunks = PyMem_Calloc(in->n_chunks + 1, sizeof(Chunk));
    if (in->chunks == NULL) goto no_memory;
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        for (Py_ssize_t start = 0; start < in->sources[i].n; start += CHUNK, k++) {
            Py_ssize_t stop = start + CHUNK;
            in->chunks[k].source = (int)i;
            in->chunks[k].start = start;
            in->chunks[k].stop = stop < in->sources[i].n ? stop : in->sources[i].n;
        }
    }
    return 0;
no_memory:
    PyErr_NoMemory();
fail:
    close_inputs(in);
    return -1;
}

/* A C-contiguous buffer of exactly `size` bytes. */
static int open_exact(PyObject *obj, Py_buffer *view, Py_ssize_t size, int writable,
                      const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->len != size) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd bytes, got %zd", what, size, view->len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* ---- the module ---- */

static PyObject *py_moments(PyObject *self, PyObject *args) {
    PyObject *arrays, *out_obj;
    int threads;
    Inputs in;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "OOi", &arrays, &out_obj, &threads)) return NULL;
    if (open_inputs(arrays, &in) < 0) return NULL;
    if (open_exact(out_obj, &out, in.n * MOMENT_FIELDS * sizeof(double), 1, "out") < 0) {
        close_inputs(&in);
        return NULL;
    }
    double *partial = PyMem_Malloc(sizeof(double) * MOMENT_FIELDS * (in.n_chunks + 1));
    if (partial == NULL) {
        PyBuffer_Release(&out);
        close_inputs(&in);
        return PyErr_NoMemory();
    }
    Job job = {.sources = in.sources, .chunks = in.chunks, .n_chunks = in.n_chunks,
               .run = moments_chunk, .partial = partial};
    double *result = (double *)out.buf;
    Py_BEGIN_ALLOW_THREADS
    run_job(&job, threads);
    for (Py_ssize_t i = 0; i < in.n; i++)
        start_moments(result + i * MOMENT_FIELDS, in.sources[i].shift);
    for (Py_ssize_t k = 0; k < in.n_chunks; k++)
        merge_moments(result + (Py_ssize_t)in.chunks[k].source * MOMENT_FIELDS,
                      partial + k * MOMENT_FIELDS);
    Py_END_ALLOW_THREADS
    PyMem_Free(partial);
    PyBuffer_Release(&out);
    close_inputs(&in);
    Py_RETURN_NONE;
}

static PyObject *py_histograms(PyObject *self, PyObject *args) {
    PyObject *arrays, *edges_obj, *clean_obj, *counts_obj;
    int bins, clipped, threads;
    Inputs in;
    Py_buffer edges, clean, counts;
    if (!PyArg_ParseTuple(args, "OOOipOi", &arrays, &edges_obj, &clean_obj, &bins, &clipped,
                          &counts_obj, &threads))
        return NULL;
    if (bins < 1) {
        PyErr_SetString(PyExc_ValueError, "bins must be at least 1");
        return NULL;
    }
    if (open_inputs(arrays, &in) < 0) return NULL;
    int opened = 0;
    int64_t *partial = NULL;
    if (open_exact(edges_obj, &edges, in.n * (bins + 1) * sizeof(double), 0, "edges") < 0)
        goto done;
    opened++;
    if (open_exact(clean_obj, &clean, in.n, 0, "clean") < 0) goto done;
    opened++;
    if (open_exact(counts_obj, &counts, in.n * bins * sizeof(int64_t), 1, "counts") < 0)
        goto done;
    opened++;
    partial = PyMem_Malloc(sizeof(int64_t) * bins * (in.n_chunks + 1));
    if (partial == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Job job = {.sources = in.sources, .chunks = in.chunks, .n_chunks = in.n_chunks,
               .run = histogram_chunk, .partial_counts = partial,
               .edges = (const double *)edges.buf, .clean = (const unsigned char *)clean.buf,
               .bins = bins, .clipped = clipped};
    int64_t *result = (int64_t *)counts.buf;
    Py_BEGIN_ALLOW_THREADS
    run_job(&job, threads);
    memset(result, 0, sizeof(int64_t) * bins * in.n);
    for (Py_ssize_t k = 0; k < in.n_chunks; k++) {
        int64_t *r = result + (Py_ssize_t)in.chunks[k].source * bins;
        for (int b = 0; b < bins; b++) r[b] += partial[k * bins + b];
    }
    Py_END_ALLOW_THREADS
done:
    PyMem_Free(partial);
    if (opened > 2) PyBuffer_Release(&counts);
    if (opened > 1) PyBuffer_Release(&clean);
    if (opened > 0) PyBuffer_Release(&edges);
    close_inputs(&in);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* ---- stats(): the arrays are reduced while the caller is still reading the next ones ---- */

typedef struct {
    Job job;            /* job.chunks: one task per array read, in the order published */
    Chunk *tasks;
    Py_ssize_t count;   /* tasks published so far */
    int input_done;     /* no more tasks will come */
#ifdef HAVE_THREADS
    pthread_cond_t more;
#endif
} Stream;

static void *stream_worker(void *arg) {
    Stream *st = (Stream *)arg;
    for (;;) {
        Py_ssize_t index = -1;
#ifdef HAVE_THREADS
        pthread_mutex_lock(&st->job.lock);
        while (st->job.next >= st->count && !st->input_done)
            pthread_cond_wait(&st->more, &st->job.lock);
#endif
        if (st->job.next < st->count) index = st->job.next++;
#ifdef HAVE_THREADS
        pthread_mutex_unlock(&st->job.lock);
#endif
        if (index < 0) return NULL;
        stats_task(&st->job, index);
    }
}

static int larger_first(const void *a, const void *b) {
    Py_ssize_t na = ((const Chunk *)a)->stop, nb = ((const Chunk *)b)->stop;
    return na < nb ? 1 : (na > nb ? -1 : 0);
}

static void publish(Stream *st, Chunk task, int last) {
#ifdef HAVE_THREADS
    pthread_mutex_lock(&st->job.lock);
#endif
    if (task.stop > 0) st->tasks[st->count++] = task;
    if (last) {  /* the tasks no thread took yet: largest first, so the threads end together */
        st->input_done = 1;
        qsort(st->tasks + st->job.next, (size_t)(st->count - st->job.next), sizeof(Chunk),
              larger_first);
    }
#ifdef HAVE_THREADS
    if (last) pthread_cond_broadcast(&st->more);
    else pthread_cond_signal(&st->more);
    pthread_mutex_unlock(&st->job.lock);
#endif
}

/* The buffer of `obj` as source i (C-contiguous float32/float64), or -1 with an error. */
static int open_source(PyObject *obj, Py_ssize_t i, Py_buffer *view, Source *s) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    const char *format = view->format ? view->format : "B";
    if (strchr("<=@", format[0]) && format[0] != '\0') format++;
    if ((strcmp(format, "f") == 0 && view->itemsize == 4) ||
        (strcmp(format, "d") == 0 && view->itemsize == 8)) {
        s->is_double = view->itemsize == 8;
        s->data = view->buf;
        s->n = view->len / view->itemsize;
        s->shift = s->n ? value_at(s, 0) : 0.0;
        if (!isfinite(s->shift)) s->shift = 0.0;
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "array %zd: expected float32 or float64, got '%s'", i,
                 view->format ? view->format : "B");
    PyBuffer_Release(view);
    return -1;
}

static PyObject *py_stats(PyObject *self, PyObject *args) {
    PyObject *read, *out_obj, *edges_obj, *counts_obj, *done_obj;
    Py_ssize_t n;
    int bins, threads;
    Py_buffer out, edges, counts, done;
    if (!PyArg_ParseTuple(args, "OniOOOOi", &read, &n, &bins, &out_obj, &edges_obj,
                          &counts_obj, &done_obj, &threads))
        return NULL;
    if (bins < 1 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "bins must be at least 1 and n at least 0");
        return NULL;
    }
    int opened = 0, started = 0, failed = 0, synchronised = 0;
    Py_buffer *views = NULL;
    Source *sources = NULL;
    Chunk *big = NULL;
    double *partial = NULL;
    unsigned char *is_open = NULL;
    Py_ssize_t n_big = 0;
    Stream st;
    memset(&st, 0, sizeof(st));
    if (open_exact(out_obj, &out, n * MOMENT_FIELDS * sizeof(double), 1, "out") < 0) goto done;
    opened++;
    if (open_exact(edges_obj, &edges, n * (bins + 1) * sizeof(double), 1, "edges") < 0)
        goto done;
    opened++;
    if (open_exact(counts_obj, &counts, n * bins * sizeof(int64_t), 1, "counts") < 0)
        goto done;
    opened++;
    if (open_exact(done_obj, &done, n, 1, "done") < 0) goto done;
    opened++;
    views = PyMem_Calloc(n + 1, sizeof(Py_buffer));
    sources = PyMem_Calloc(n + 1, sizeof(Source));
    st.tasks = PyMem_Calloc(n + 1, sizeof(Chunk));
    is_open = PyMem_Calloc(n + 1, 1);
    if (views == NULL || sources == NULL || st.tasks == NULL || is_open == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    st.job = (Job){.sources = sources, .chunks = st.tasks, .run = stats_task,
                   .moments_out = (double *)out.buf, .edges_out = (double *)edges.buf,
                   .counts_out = (int64_t *)counts.buf, .done = (unsigned char *)done.buf,
                   .bins = bins};
    memset(done.buf, 0, (size_t)n);
    for (Py_ssize_t i = 0; i < n; i++) start_moments(st.job.moments_out + i * MOMENT_FIELDS, 0.0);
#ifdef HAVE_THREADS
    pthread_t helpers[63];
    if (threads > 64) threads = 64;
    pthread_mutex_init(&st.job.lock, NULL);
    pthread_cond_init(&st.more, NULL);
    synchronised = 1;
    for (int t = 1; t < threads; t++)
        if (pthread_create(&helpers[started], NULL, stream_worker, &st) == 0) started++;
#endif
    /* read the arrays one by one (the caller's code, under the GIL) while the helpers
     * reduce those already read; arrays over FUSE_MAX wait for the chunked pass below */
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        PyObject *obj = PyObject_CallFunction(read, "n", i);
        if (obj == NULL) {
            failed = 1;
        } else if (obj != Py_None) {
            if (open_source(obj, i, &views[i], &sources[i]) < 0) {
                failed = 1;
            } else {
                is_open[i] = 1;
                start_moments(st.job.moments_out + i * MOMENT_FIELDS, sources[i].shift);
                if (sources[i].n <= FUSE_MAX)
                    publish(&st, (Chunk){.source = (int)i, .start = 0, .stop = sources[i].n}, 0);
                else
                    n_big += (sources[i].n + CHUNK - 1) / CHUNK;
            }
        }
        Py_XDECREF(obj);
    }
    publish(&st, (Chunk){0}, 1);
    if (!failed && n_big) {
        big = PyMem_Calloc(n_big + 1, sizeof(Chunk));
        partial = PyMem_Malloc(sizeof(double) * MOMENT_FIELDS * (n_big + 1));
        if (big == NULL || partial == NULL) {
            PyErr_NoMemory();
            failed = 1;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    stream_worker(&st);  /* the caller's thread joins the helpers */
#ifdef HAVE_THREADS
    for (int t = 0; t < started; t++) pthread_join(helpers[t], NULL);
#endif
    if (!failed && n_big) {  /* the large arrays: moments in chunks on every core */
        Py_ssize_t k = 0;
        for (Py_ssize_t i = 0; i < n; i++)
            for (Py_ssize_t start = 0; sources[i].n > FUSE_MAX && start < sources[i].n;
                 start += CHUNK, k++)
                big[k] = (Chunk){.source = (int)i, .start = start,
                                 .stop = start + CHUNK < sources[i].n ? start + CHUNK
                                                                      : sources[i].n};
        Job chunked = {.sources = sources, .chunks = big, .n_chunks = n_big,
                       .run = moments_chunk, .partial = partial};
        run_job(&chunked, threads);
        for (k = 0; k < n_big; k++)
            merge_moments(st.job.moments_out + (Py_ssize_t)big[k].source * MOMENT_FIELDS,
                          partial + k * MOMENT_FIELDS);
    }
    Py_END_ALLOW_THREADS
done:
#ifdef HAVE_THREADS
    if (synchronised) {
        pthread_mutex_destroy(&st.job.lock);
        pthread_cond_destroy(&st.more);
    }
#endif
    for (Py_ssize_t i = 0; is_open != NULL && i < n; i++)
        if (is_open[i]) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    PyMem_Free(sources);
    PyMem_Free(st.tasks);
    PyMem_Free(is_open);
    PyMem_Free(big);
    PyMem_Free(partial);
    if (opened > 3) PyBuffer_Release(&done);
    if (opened > 2) PyBuffer_Release(&counts);
    if (opened > 1) PyBuffer_Release(&edges);
    if (opened > 0) PyBuffer_Release(&out);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* ---- pattern_counts(): 16-bit values counted by bit pattern ---- */

#define PATTERNS 65536
#define PATTERN_MIN_SPLIT ((Py_ssize_t)1 << 18) /* fewer values: one thread counts them */

typedef struct {
    const uint16_t *data;
    Py_ssize_t n;
    uint32_t *table; /* PATTERNS counts (n < 2^32 per range) */
} PatternRange;

static void count_patterns(const uint16_t *x, Py_ssize_t n, uint32_t *table) {
    /* two interleaved tables: a value repeated back to back (zeros, pruned weights) does not
     * wait on its own previous increment */
    uint32_t *t0 = table, *t1 = table + PATTERNS;
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4) {
        t0[x[i]]++;
        t1[x[i + 1]]++;
        t0[x[i + 2]]++;
        t1[x[i + 3]]++;
    }
    for (; i < n; i++) t0[x[i]]++;
}

static void *pattern_worker(void *arg) {
    PatternRange *r = (PatternRange *)arg;
    count_patterns(r->data, r->n, r->table);
    return NULL;
}

/* pattern_counts(arrays, counts, threads): counts[i, p] (int64, len(arrays) x 65536) = how
 * many values of arrays[i] (2-byte buffers: bfloat16 as uint16, or float16) have bit
 * pattern p.  One pass over memory; every statistic of a 16-bit array follows exactly from
 * its 65,536 counts. */
static PyObject *py_pattern_counts(PyObject *self, PyObject *args) {
    PyObject *arrays, *counts_obj;
    int threads;
    Py_buffer counts;
    if (!PyArg_ParseTuple(args, "OOi", &arrays, &counts_obj, &threads)) return NULL;
    PyObject *seq = PySequence_Fast(arrays, "arrays must be a list of 2-byte arrays");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (open_exact(counts_obj, &counts, n * PATTERNS * (Py_ssize_t)sizeof(int64_t), 1,
                   "counts") < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    uint32_t *tables = PyMem_RawCalloc((size_t)threads * 2 * PATTERNS, sizeof(uint32_t));
    if (tables == NULL) {
        PyBuffer_Release(&counts);
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    int failed = 0;
    for (Py_ssize_t i = 0; i < n && !failed; i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &view, PyBUF_C_CONTIGUOUS) < 0) {
            failed = 1;
            break;
        }
        if (view.itemsize != 2 && view.len % 2 != 0) {
            PyErr_Format(PyExc_TypeError, "array %zd: expected 2-byte values", i);
            PyBuffer_Release(&view);
            failed = 1;
            break;
        }
        const uint16_t *x = (const uint16_t *)view.buf;
        Py_ssize_t len = view.len / 2;
        int parts = len < PATTERN_MIN_SPLIT ? 1 : threads;
        Py_ssize_t step = (len + parts - 1) / parts;
        if (step >= (Py_ssize_t)1 << 31) {  /* keep every uint32 count below 2^32 */
            parts = (int)((len + ((Py_ssize_t)1 << 31) - 1) >> 31);
            step = (len + parts - 1) / parts;
        }
        int64_t *out = (int64_t *)counts.buf + i * PATTERNS;
        Py_BEGIN_ALLOW_THREADS
        memset(out, 0, sizeof(int64_t) * PATTERNS);
        for (Py_ssize_t first = 0; first < parts; first += threads) {
            PatternRange ranges[64];
            int used = 0;
            for (int t = 0; t < threads && first + t < parts; t++, used++) {
                Py_ssize_t start = (first + t) * step;
                Py_ssize_t stop = start + step < len ? start + step : len;
                uint32_t *table = tables + (size_t)t * 2 * PATTERNS;
                memset(table, 0, sizeof(uint32_t) * 2 * PATTERNS);
                ranges[t] = (PatternRange){x + start, stop > start ? stop - start : 0, table};
            }
#ifdef HAVE_THREADS
            pthread_t helpers[64];
            int started[64] = {0};
            for (int t = 1; t < used; t++)
                started[t] = pthread_create(&helpers[t], NULL, pattern_worker, &ranges[t]) == 0;
            pattern_worker(&ranges[0]);
            for (int t = 1; t < used; t++) {
                if (started[t]) pthread_join(helpers[t], NULL);
                else pattern_worker(&ranges[t]);
            }
#else
            for (int t = 0; t < used; t++) pattern_worker(&ranges[t]);
#endif
            for (int t = 0; t < used; t++) {
                const uint32_t *table = ranges[t].table;
                for (int p = 0; p < PATTERNS; p++) out[p] += (int64_t)table[p] + table[PATTERNS + p];
            }
        }
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&view);
    }
    PyMem_RawFree(tables);
    PyBuffer_Release(&counts);
    Py_DECREF(seq);
    if (failed) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_use_moments(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    if (choose_moments(name)) Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"use_moments", py_use_moments, METH_VARARGS,
     "use_moments(name): run the moment pass's 'avx512' or 'avx2' variant (fused "
     "multiply-adds) or its 'plain' one ('fused' or 'plain' in builds without the choice); "
     "False when this CPU or build lacks it.  For tests: the best one is chosen on load."},
    {"pattern_counts", py_pattern_counts, METH_VARARGS,
     "pattern_counts(arrays, counts, threads): counts[i, p] (int64, len(arrays) x 65536) = "
     "how many 16-bit values of arrays[i] (bfloat16 as uint16, or float16) have bit pattern p."},
    {"moments", py_moments, METH_VARARGS,
     "moments(arrays, out, threads): per array [finite, nan, inf, zeros, min, max, shift, "
     "sum(x - shift), sum((x - shift)**2)] into out (float64, len(arrays) x 9)."},
    {"histograms", py_histograms, METH_VARARGS,
     "histograms(arrays, edges, clean, bins, clipped, counts, threads): numpy.histogram's "
     "counts of each array on its own edges into counts (int64, len(arrays) x bins)."},
    {"stats", py_stats, METH_VARARGS,
     "stats(read, n, bins, out, edges, counts, done, threads): read(i) for i in range(n) "
     "gives a float32/float64 array or None; moments() of each array into out, and where "
     "done[i] comes back 1, numpy.histogram's edges and counts of it (its own range) into "
     "edges[i] and counts[i].  Arrays are reduced while the next ones are read."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_host_reduce",
    "Fused, threaded reductions over float32/float64 host buffers (see host_stats.py).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__host_reduce(void) {
    choose_moments(NULL);
    return PyModule_Create(&module);
}
