// Direct 2-D convolution (float32, NCHW, stride 1, "valid" or "same" padding, any kernel size)
// forward, backward-input and backward-filter, optionally fused with a bias, a ReLU and a 2x2
// max pooling, and a 2x2 max pooling of its own. Entry points follow MindSpore's ops.Custom "aot"
// calling convention:
//   int name(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
//            void *stream, void *extra)
// with the inputs first and the outputs after them; the return value 0 means success.
//
// The vector width is chosen when the file is compiled: AVX-512 (16 floats), AVX2 with FMA
// (8 floats) or plain C++ (1 float). Every sum runs in the same order on every call, so results
// are deterministic on one machine.
//
// The convolutions work on a "wide" output grid: output row oh is stored with the padded input's
// row stride Wp, so output position p = oh * Wp + ow reads the input at p + kh * Wp + kw, one
// contiguous vector for many outputs, with no edge cases; the columns ow >= Wo are computed and
// discarded.

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

// GCC's vector extensions rather than intrinsics: the compiler maps them to the instructions the
// flags enable, and the file needs no C++ library headers, which keeps its compilation short
// (it runs on the user's machine at first use). Products and sums fuse into FMA instructions
// because the build passes -ffp-contract=fast.
namespace {
#if defined(__AVX512F__)
constexpr int VL = 16;
constexpr int CB_FWD = 8, V_FWD = 2, CB_BWF = 4, TB_BWI = 4;
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int VL = 8;
constexpr int CB_FWD = 4, V_FWD = 2, CB_BWF = 2, TB_BWI = 2;
#else
constexpr int VL = 4;
constexpr int CB_FWD = 4, V_FWD = 2, CB_BWF = 2, TB_BWI = 2;
#endif
typedef float vec __attribute__((vector_size(VL * sizeof(float))));
typedef int32_t ivec __attribute__((vector_size(VL * sizeof(int32_t))));
#if defined(__AVX512F__)
constexpr ivec kEvenLanes = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
#elif defined(__AVX2__) && defined(__FMA__)
constexpr ivec kEvenLanes = {0, 2, 4, 6, 8, 10, 12, 14};
#else
constexpr ivec kEvenLanes = {0, 2, 4, 6};
#endif
constexpr ivec kOddLanes = kEvenLanes + 1;
inline vec vzero() { return vec{} ; }
inline vec vload(const float *p) {
  vec v;
  __builtin_memcpy(&v, p, sizeof(vec));
  return v;
}
inline void vstore(float *p, vec v) { __builtin_memcpy(p, &v, sizeof(vec)); }
inline vec vset1(float x) { return vec{} + x; }
inline vec vfma(vec a, vec b, vec c) { return a * b + c; }
inline float vsum(vec v) {  // in a fixed order, lane by lane
  float s = 0.0f;
  _Pragma("GCC unroll 16")
  for (int k = 0; k < VL; ++k) s += v[k];
  return s;
}
template <typename T> inline T min_of(T a, T b) { return a < b ? a : b; }
template <typename T> inline T max_of(T a, T b) { return a < b ? b : a; }
inline void fill(float *p, int64_t n, float v) { for (int64_t k = 0; k < n; ++k) p[k] = v; }
}  // namespace


namespace {

// A fixed set of worker threads that run one task at a time alongside the caller: part 0 on the
// calling thread, parts 1.. on the workers. Idle workers poll with sched_yield (which hands the
// core to any other runnable thread) for a few milliseconds, the gap between two operators of a
// training step, and then sleep on a futex. The number of threads is the CPUs this process may
// use, at most kMaxThreads, or MSTRAIN_KERNEL_THREADS (1 runs everything on the caller).
constexpr int kMaxThreads = 4;
constexpr int64_t kPollNs = 4000000;

typedef void (*task_fn)(void *ctx, int part, int parts);

struct Pool {
  int parts = 0;  // 0: not started in this process
  int task_parts = 0;  // the parts of the current task
  task_fn fn = nullptr;
  void *ctx = nullptr;
  int generation = 0;  // a new task each time it changes
  int pending = 0;     // workers still on the current task
  int sleepers = 0;    // workers asleep on `generation`
  int first_generation = 0;  // `generation` when the workers started
  int limit = kMaxThreads;   // the most threads a task uses (mstrain_kernels_threads)
};
Pool pool;
pthread_mutex_t pool_start = PTHREAD_MUTEX_INITIALIZER;

int64_t now_ns() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int load(const int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

inline void pause_briefly() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

void *worker(void *arg) {
  const int part = static_cast<int>(reinterpret_cast<intptr_t>(arg));
  int seen = pool.first_generation;  // read before any task: none can be missed
  for (;;) {
    int64_t since = 0;
    for (int spins = 0; load(&pool.generation) == seen; ++spins) {
      if (spins < 64) {
        pause_briefly();
        continue;
      }
      if (since == 0) since = now_ns();
      if (now_ns() - since < kPollNs) {
        sched_yield();
        continue;
      }
      __atomic_add_fetch(&pool.sleepers, 1, __ATOMIC_SEQ_CST);
      if (load(&pool.generation) == seen)
        syscall(SYS_futex, &pool.generation, FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
      __atomic_sub_fetch(&pool.sleepers, 1, __ATOMIC_SEQ_CST);
      since = 0;
    }
    seen = load(&pool.generation);
    if (part < pool.task_parts) {
      pool.fn(pool.ctx, part, pool.task_parts);
      __atomic_sub_fetch(&pool.pending, 1, __ATOMIC_RELEASE);
    }
  }
  return nullptr;
}

pthread_mutex_t pool_busy = PTHREAD_MUTEX_INITIALIZER;

// A forked child has only the thread that forked: it starts its own workers when it needs them.
void forget_pool() {
  pool = Pool();
  pthread_mutex_init(&pool_start, nullptr);
  pthread_mutex_init(&pool_busy, nullptr);
}


int wanted_threads() {
  const char *env = getenv("MSTRAIN_KERNEL_THREADS");
  if (env && *env) {
    const int n = atoi(env);
    return n < 1 ? 1 : min_of(n, kMaxThreads);
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return max_of(1, min_of(CPU_COUNT(&set), kMaxThreads));
}

void start_pool() {
  pthread_mutex_lock(&pool_start);
  if (pool.parts == 0) {
    static bool registered = false;
    if (!registered) {
      pthread_atfork(nullptr, nullptr, forget_pool);
      registered = true;
    }
    int parts = 1;
    const int wanted = wanted_threads();
    pool.first_generation = load(&pool.generation);
    for (; parts < wanted; ++parts) {
      pthread_t thread;
      pthread_attr_t attr;
      pthread_attr_init(&attr);
      pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
      const int failed = pthread_create(&thread, &attr, worker,
                                        reinterpret_cast<void *>(static_cast<intptr_t>(parts)));
      pthread_attr_destroy(&attr);
      if (failed) break;  // fewer threads: the caller does their parts
    }
    __atomic_store_n(&pool.parts, parts, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&pool_start);
}

// Runs fn(ctx, part, parts) for every part, on the caller and the workers, and returns when
// all are done. One task at a time: the framework launches this library's operators from one
// thread; a call from another thread while a task runs does its parts alone.

void run_parts(task_fn fn, void *ctx, int64_t work_items) {
  if (load(&pool.parts) == 0) start_pool();
  const int parts = min_of(load(&pool.parts), load(&pool.limit));
  if (parts <= 1 || work_items < 2 || pthread_mutex_trylock(&pool_busy) != 0) {
    fn(ctx, 0, 1);
    return;
  }
  pool.fn = fn;
  pool.ctx = ctx;
  pool.task_parts = parts;
  __atomic_store_n(&pool.pending, parts - 1, __ATOMIC_SEQ_CST);
  __atomic_add_fetch(&pool.generation, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&pool.sleepers, __ATOMIC_SEQ_CST) > 0)
    syscall(SYS_futex, &pool.generation, FUTEX_WAKE_PRIVATE, kMaxThreads, nullptr, nullptr, 0);
  fn(ctx, 0, parts);
  for (int spins = 0; load(&pool.pending) != 0; ++spins) {
    if (spins < 256) pause_briefly();
    else sched_yield();
  }
  pthread_mutex_unlock(&pool_busy);
}

// A task's n items, claimed `size` at a time by whichever thread comes next: a worker that
// wakes late takes fewer, and no thread waits for another's fixed share. Each item is computed
// whole by one thread, so which thread takes it does not change the result.
struct Chunks {
  int64_t n, size, next;
  bool take(int64_t *begin, int64_t *end) {
    const int64_t b = __atomic_fetch_add(&next, size, __ATOMIC_RELAXED);
    if (b >= n) return false;
    *begin = b;
    *end = b + size < n ? b + size : n;
    return true;
  }
};

// n items in chunks of about a sixteenth (a multiple of `multiple`).
inline Chunks chunks_of(int64_t n, int64_t multiple = 1) {
  const int64_t size = (n / 16 + multiple - 1) / multiple * multiple;
  return Chunks{n, size > multiple ? size : multiple, 0};
}

}  // namespace

namespace {

constexpr int KB_BWF = 5;  // kernel columns per block of the backward-filter pass

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Scratch buffers, grown as needed and kept between calls (one set per thread).
struct Scratch {
  float *data = nullptr;
  int64_t size = 0;
  ~Scratch() { free(data); }
};
thread_local Scratch scratch_a, scratch_b, scratch_c;

float *grow(Scratch *buf, int64_t n) {
  if (buf->size < n) {
    free(buf->data);
    buf->data = static_cast<float *>(malloc(sizeof(float) * n));
    buf->size = buf->data ? n : 0;
  }
  return buf->data;
}

// A convolution's geometry: input C x H x W, weights Co x C x KH x KW, output Co x Ho x Wo,
// the input padded by ph (top), pw (left) into Hp x Wp = (Ho + KH - 1) x (Wo + KW - 1).
struct Geometry {
  int64_t n, c, h, w, co, kh, kw, ho, wo, ph, pw, hp, wp;
  int64_t p;    // wide output positions: ho * wp
  int64_t pr;   // p rounded up to whole vectors
  int64_t cs;   // channel stride of the padded input, with the slack the blocks read
};

Geometry geometry(int64_t n, int64_t c, int64_t h, int64_t w, int64_t co, int64_t kh,
                  int64_t kw, bool same) {
  Geometry g{};
  g.n = n; g.c = c; g.h = h; g.w = w; g.co = co; g.kh = kh; g.kw = kw;
  g.ho = same ? h : h - kh + 1;
  g.wo = same ? w : w - kw + 1;
  g.ph = same ? (kh - 1) / 2 : 0;
  g.pw = same ? (kw - 1) / 2 : 0;
  g.hp = g.ho + kh - 1;
  g.wp = g.wo + kw - 1;
  g.p = g.ho * g.wp;
  g.pr = round_up(g.p, VL);
  g.cs = round_up(max_of(g.hp * g.wp, g.pr + (kh - 1) * g.wp + kw - 1), VL);
  return g;
}

// Copies one sample's C x H x W input into the zero-padded layout (channel stride cs).
void pad_input(const float *x, const Geometry &g, float *xp) {
  for (int64_t ci = 0; ci < g.c; ++ci) {
    float *dst = xp + ci * g.cs;
    fill(dst, g.cs, 0.0f);
    const float *src = x + ci * g.h * g.w;
    for (int64_t r = 0; r < g.h; ++r) {
      memcpy(dst + (r + g.ph) * g.wp + g.pw, src + r * g.w, sizeof(float) * g.w);
    }
  }
}

// out[o][p] = sum over i, a, b of wt[o][i][a][b] * in[i][p + a * row + b], for p < pr, as a
// block of CB output channels by V vectors of positions.
template <int CB, int V>
void conv_block(const float *in, int64_t cin, int64_t cs, int64_t row, int64_t ka, int64_t kb,
                const float *wt, int64_t p0, float *out, int64_t ostride) {
  vec acc[CB][V];
  _Pragma("GCC unroll 16")
  for (int o = 0; o < CB; ++o)
    _Pragma("GCC unroll 16")
    for (int v = 0; v < V; ++v) acc[o][v] = vzero();
  const int64_t wstride = cin * ka * kb;
  for (int64_t i = 0; i < cin; ++i) {
    for (int64_t a = 0; a < ka; ++a) {
      for (int64_t b = 0; b < kb; ++b) {
        const float *src = in + i * cs + a * row + b + p0;
        vec xv[V];
        _Pragma("GCC unroll 16")
        for (int v = 0; v < V; ++v) xv[v] = vload(src + v * VL);
        const float *wp = wt + (i * ka + a) * kb + b;
        _Pragma("GCC unroll 16")
        for (int o = 0; o < CB; ++o) {
          const vec wv = vset1(wp[o * wstride]);
          _Pragma("GCC unroll 16")
          for (int v = 0; v < V; ++v) acc[o][v] = vfma(wv, xv[v], acc[o][v]);
        }
      }
    }
  }
  _Pragma("GCC unroll 16")
  for (int o = 0; o < CB; ++o)
    _Pragma("GCC unroll 16")
    for (int v = 0; v < V; ++v) vstore(out + o * ostride + p0 + v * VL, acc[o][v]);
}

template <int CB>
void conv_channels(const float *in, int64_t cin, int64_t cs, int64_t row, int64_t ka,
                   int64_t kb, const float *wt, int64_t pr, float *out, int64_t ostride) {
  int64_t p0 = 0;
  for (; p0 + VL * V_FWD <= pr; p0 += VL * V_FWD)
    conv_block<CB, V_FWD>(in, cin, cs, row, ka, kb, wt, p0, out, ostride);
  for (; p0 < pr; p0 += VL) conv_block<CB, 1>(in, cin, cs, row, ka, kb, wt, p0, out, ostride);
}

// The wide correlation of one sample: out (cout x pr, row stride `row`) from in (cin channels
// of stride cs) and weights wt [cout][cin][ka][kb].
void correlate(const float *in, int64_t cin, int64_t cs, int64_t row, int64_t ka, int64_t kb,
               const float *wt, int64_t cout, int64_t pr, float *out) {
  const int64_t wstride = cin * ka * kb;
  for (int64_t o = 0; o < cout;) {
    const int64_t left = min_of<int64_t>(cout - o, CB_FWD);
    const float *w = wt + o * wstride;
    float *dst = out + o * pr;
    switch (left) {
#define MSTRAIN_CASE(CB) \
      case CB: conv_channels<(CB <= CB_FWD ? CB : 1)>(in, cin, cs, row, ka, kb, w, pr, dst, pr); \
        break;
      MSTRAIN_CASE(8) MSTRAIN_CASE(7) MSTRAIN_CASE(6) MSTRAIN_CASE(5)
      MSTRAIN_CASE(4) MSTRAIN_CASE(3) MSTRAIN_CASE(2)
#undef MSTRAIN_CASE
      default: conv_channels<1>(in, cin, cs, row, ka, kb, w, pr, dst, pr);
    }
    o += left;
  }
}

// What the backward passes receive instead of the convolution's output gradient.
enum class Source { kPlain, kRelu, kPool };

// The 2x2 maximum of each window, the first of equal values winning (row-major order), as
// MindSpore's MaxPool and MaxPoolGrad pick. With `relu`, windows whose maximum is not above 0
// get index 4: their gradient is cut by the ReLU.
inline void pool_window(float a, float b, float c, float d, bool relu, float *value,
                        uint8_t *index) {
  float m = a;
  uint8_t k = 0;
  if (b > m) { m = b; k = 1; }
  if (c > m) { m = c; k = 2; }
  if (d > m) { m = d; k = 3; }
  if (relu && !(m > 0.0f)) { m = 0.0f; k = 4; }
  *value = m;
  *index = k;
}

// The same for VL windows side by side, by lane masks: which value of a window wins follows the
// data, which no branch predictor learns on new batches (docs/speed.md). a, b, c, d are the
// windows' four values.
inline void pool_windows(vec a, vec b, vec c, vec d, bool relu, vec *value, ivec *index) {
  vec m = a;
  ivec k = ivec{};
  ivec s = b > m;
  m = s ? b : m;
  k = s ? ivec{} + 1 : k;
  s = c > m;
  m = s ? c : m;
  k = s ? ivec{} + 2 : k;
  s = d > m;
  m = s ? d : m;
  k = s ? ivec{} + 3 : k;
  if (relu) {
    s = ~(m > vzero());
    m = s ? vzero() : m;
    k = s ? ivec{} + 4 : k;
  }
  *value = m;
  *index = k;
}

// The even and the odd floats of p[0 .. 2 VL).
inline void deinterleave(const float *p, vec *even, vec *odd) {
  const vec lo = vload(p), hi = vload(p + VL);
  *even = __builtin_shuffle(lo, hi, kEvenLanes);
  *odd = __builtin_shuffle(lo, hi, kOddLanes);
}

// The epilogue of the forward pass for one sample: the wide output plus bias, then ReLU and
// pooling as asked, into the compact outputs.
void finish_forward(const float *wide, const Geometry &g, const float *bias, Source kind,
                    bool relu, float *y, uint8_t *index) {
  if (kind == Source::kPool) {
    const int64_t hq = g.ho / 2, wq = g.wo / 2;
    for (int64_t o = 0; o < g.co; ++o) {
      const float bo = bias ? bias[o] : 0.0f;
      const float *src = wide + o * g.pr;
      float *dst = y + o * hq * wq;
      uint8_t *idx = index + o * hq * wq;
      for (int64_t i = 0; i < hq; ++i) {
        const float *r0 = src + 2 * i * g.wp, *r1 = r0 + g.wp;
        for (int64_t j = 0; j < wq; j += VL) {  // reads up to 2 VL floats past the row
          vec a, b, c, d, m;
          ivec k;
          deinterleave(r0 + 2 * j, &a, &b);
          deinterleave(r1 + 2 * j, &c, &d);
          if (bias) { a += bo; b += bo; c += bo; d += bo; }
          if (relu) {  // the pooling sees the ReLU's outputs, ties of zeros included
            const vec z = vzero();
            a = a < z ? z : a; b = b < z ? z : b;
            c = c < z ? z : c; d = d < z ? z : d;
          }
          pool_windows(a, b, c, d, relu, &m, &k);
          const int64_t lanes = min_of(wq - j, int64_t(VL));
          for (int64_t l = 0; l < lanes; ++l) {
            dst[i * wq + j + l] = m[l];
            idx[i * wq + j + l] = static_cast<uint8_t>(k[l]);
          }
        }
      }
    }
    return;
  }
  for (int64_t o = 0; o < g.co; ++o) {
    const float bo = bias ? bias[o] : 0.0f;
    for (int64_t r = 0; r < g.ho; ++r) {
      const float *src = wide + o * g.pr + r * g.wp;
      float *dst = y + (o * g.ho + r) * g.wo;
      for (int64_t q = 0; q < g.wo; ++q) {
        float v = src[q];
        if (bias) v += bo;
        if (relu) v = v > 0.0f ? v : 0.0f;
        dst[q] = v;
      }
    }
  }
}

// The gradient at the convolution's output (before bias) for one sample, in the layout `dst`
// asks for: rows of stride `row` starting at (top, left), zero elsewhere (dst is cleared
// first over `size` floats).
void gradient_at_output(const float *dy, const float *aux, const uint8_t *index, Source kind,
                        const Geometry &g, float *dst, int64_t chan_stride, int64_t row,
                        int64_t top, int64_t left, float *bias_out) {
  const int64_t hq = g.ho / 2, wq = g.wo / 2;
  for (int64_t o = 0; o < g.co; ++o) {
    float *out = dst + o * chan_stride;
    fill(out, chan_stride, 0.0f);
    float sum = 0.0f;
    if (kind == Source::kPool) {
      const float *d = dy + o * hq * wq;
      const uint8_t *idx = index + o * hq * wq;
      for (int64_t i = 0; i < hq; ++i) {
        for (int64_t j = 0; j < wq; ++j) {
          const uint8_t k = idx[i * wq + j];
          if (k > 3) continue;
          const float v = d[i * wq + j];
          out[(top + 2 * i + (k >> 1)) * row + left + 2 * j + (k & 1)] = v;
          sum += v;
        }
      }
    } else {
      for (int64_t r = 0; r < g.ho; ++r) {
        const float *d = dy + (o * g.ho + r) * g.wo;
        const float *y = kind == Source::kRelu ? aux + (o * g.ho + r) * g.wo : nullptr;
        float *drow = out + (top + r) * row + left;
        for (int64_t q = 0; q < g.wo; ++q) {
          const float v = (y && !(y[q] > 0.0f)) ? 0.0f : d[q];
          drow[q] = v;
          sum += v;
        }
      }
    }
    if (bias_out) bias_out[o] = sum;
  }
}

// dw[o][i][a][b] = sum over samples and positions of g[s][o][p] * xp[s][i][p + a * wp + b],
// over CB output channels and KB kernel columns at a time, reduced across the vector's lanes
// once at the end.
template <int CB, int KB>
void filter_block(const float *gw, int64_t gstride, int64_t gsample, const float *xp,
                  int64_t xsample, const Geometry &g, int64_t i, int64_t a, int64_t b0,
                  int64_t o0, int64_t npos, float *dw) {
  vec acc[CB][KB];
  _Pragma("GCC unroll 16")
  for (int o = 0; o < CB; ++o)
    _Pragma("GCC unroll 16")
    for (int k = 0; k < KB; ++k) acc[o][k] = vzero();
  for (int64_t s = 0; s < g.n; ++s) {
    const float *xs = xp + s * xsample + i * g.cs + a * g.wp + b0;
    const float *gs = gw + s * gsample + o0 * gstride;
    for (int64_t p = 0; p < npos; p += VL) {
      vec xv[KB];
      _Pragma("GCC unroll 16")
      for (int k = 0; k < KB; ++k) xv[k] = vload(xs + p + k);
      _Pragma("GCC unroll 16")
      for (int o = 0; o < CB; ++o) {
        const vec gv = vload(gs + o * gstride + p);
        _Pragma("GCC unroll 16")
        for (int k = 0; k < KB; ++k) acc[o][k] = vfma(gv, xv[k], acc[o][k]);
      }
    }
  }
  _Pragma("GCC unroll 16")
  for (int o = 0; o < CB; ++o)
    _Pragma("GCC unroll 16")
    for (int k = 0; k < KB; ++k)
      dw[(((o0 + o) * g.c + i) * g.kh + a) * g.kw + b0 + k] = vsum(acc[o][k]);
}

template <int CB>
void filter_row(const float *gw, int64_t gstride, int64_t gsample, const float *xp,
                int64_t xsample, const Geometry &g, int64_t i, int64_t a, int64_t o0,
                int64_t npos, float *dw) {
  int64_t b = 0;
  for (; b + KB_BWF <= g.kw; b += KB_BWF)
    filter_block<CB, KB_BWF>(gw, gstride, gsample, xp, xsample, g, i, a, b, o0, npos, dw);
  for (; b < g.kw; ++b)
    filter_block<CB, 1>(gw, gstride, gsample, xp, xsample, g, i, a, b, o0, npos, dw);
}

// The backward-filter sums come in items: one input channel, one kernel row and a block of output
// channels. Each weight's sum is the same whichever block or thread computes it.
inline int block_width(int64_t left) {
  return left >= CB_BWF ? CB_BWF : left >= 2 ? 2 : 1;
}

int64_t blocks_per_row(int64_t co) {
  int64_t blocks = 0;
  for (int64_t o = 0; o < co; o += block_width(co - o)) ++blocks;
  return blocks;
}

void filter_item(const float *gw, int64_t gstride, int64_t gsample, const float *xp,
                 int64_t xsample, const Geometry &g, int64_t npos, int64_t item, float *dw) {
  const int64_t blocks = blocks_per_row(g.co);
  const int64_t row = item / blocks, block = item % blocks;
  const int64_t i = row / g.kh, a = row % g.kh;
  int64_t o = 0;
  for (int64_t k = 0; k < block; ++k) o += block_width(g.co - o);
  const int width = block_width(g.co - o);
  if (width == CB_BWF)
    filter_row<CB_BWF>(gw, gstride, gsample, xp, xsample, g, i, a, o, npos, dw);
  else if (width == 2)
    filter_row<2>(gw, gstride, gsample, xp, xsample, g, i, a, o, npos, dw);
  else
    filter_row<1>(gw, gstride, gsample, xp, xsample, g, i, a, o, npos, dw);
}

bool is_f32(const char *t) { return t && strcmp(t, "float32") == 0; }
bool is_u8(const char *t) { return t && strcmp(t, "uint8") == 0; }

// Checks and reads the geometry from the input x [N, C, H, W] and the weights [Co, C, KH, KW].
bool read_geometry(int *ndims, int64_t **shapes, int xi, int wi, bool same, Geometry *g) {
  if (ndims[xi] != 4 || ndims[wi] != 4) return false;
  const int64_t *xs = shapes[xi], *ws = shapes[wi];
  if (xs[1] != ws[1] || ws[2] < 1 || ws[3] < 1) return false;
  if (!same && (xs[2] < ws[2] || xs[3] < ws[3])) return false;
  *g = geometry(xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], same);
  return true;
}

int64_t count(int nd, const int64_t *shape) {
  int64_t n = 1;
  for (int k = 0; k < nd; ++k) n *= shape[k];
  return n;
}

// A per-sample part's setup: this thread's two scratch buffers (of na and nb floats); false,
// with the task marked failed, without memory.
bool scratch_pair(int64_t na, int64_t nb, float **a, float **b, int *failed) {
  *a = grow(&scratch_a, na);
  *b = grow(&scratch_b, nb);
  if (!*a || !*b) {
    __atomic_store_n(failed, 1, __ATOMIC_RELAXED);
    return false;
  }
  return true;
}

struct ForwardTask {
  const float *x, *w, *b;
  float *y;
  uint8_t *index;
  const Geometry *g;
  Source kind;
  bool relu;
  int64_t per_out;
  int failed;
  Chunks samples;
};

// Chunks of the batch, sample by sample, in this thread's scratch buffers.
void forward_part(void *ctx, int, int) {
  ForwardTask &t = *static_cast<ForwardTask *>(ctx);
  const Geometry &g = *t.g;
  float *xp, *wide;
  int64_t first, last;
  // The wide output, and 2 VL floats after it that the pooling's last vectors read.
  if (!scratch_pair(g.c * g.cs, g.co * g.pr + 2 * VL, &xp, &wide, &t.failed)) return;
  fill(wide + g.co * g.pr, 2 * VL, 0.0f);
  while (t.samples.take(&first, &last)) {
    for (int64_t s = first; s < last; ++s) {
      pad_input(t.x + s * g.c * g.h * g.w, g, xp);
      correlate(xp, g.c, g.cs, g.wp, g.kh, g.kw, t.w, g.co, g.pr, wide);
      finish_forward(wide, g, t.b, t.kind, t.relu, t.y + s * t.per_out,
                     t.index ? t.index + s * t.per_out : nullptr);
    }
  }
}

int forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
            Source kind, bool relu, bool same) {
  const int outputs = kind == Source::kPool ? 2 : 1;
  const bool has_bias = nparam == 3 + outputs;
  if (nparam != 2 + outputs && !has_bias) return 1;
  for (int k = 0; k < 2 + (has_bias ? 1 : 0) + 1; ++k)
    if (!is_f32(dtypes[k])) return 2;
  Geometry g;
  if (!read_geometry(ndims, shapes, 0, 1, same, &g)) return 3;
  const int yi = has_bias ? 3 : 2;
  const int64_t per_out = kind == Source::kPool ? g.co * (g.ho / 2) * (g.wo / 2)
                                                : g.co * g.ho * g.wo;
  if (count(ndims[yi], shapes[yi]) != g.n * per_out) return 4;
  if (kind == Source::kPool &&
      (!is_u8(dtypes[yi + 1]) || count(ndims[yi + 1], shapes[yi + 1]) != g.n * per_out))
    return 5;
  const float *x = static_cast<const float *>(params[0]);
  const float *w = static_cast<const float *>(params[1]);
  const float *b = has_bias ? static_cast<const float *>(params[2]) : nullptr;
  float *y = static_cast<float *>(params[yi]);
  uint8_t *index = kind == Source::kPool ? static_cast<uint8_t *>(params[yi + 1]) : nullptr;
  ForwardTask task{x, w, b, y, index, &g, kind, relu, per_out, 0, chunks_of(g.n)};
  run_parts(forward_part, &task, g.n);
  return task.failed ? 6 : 0;
}

struct FilterTask {
  const float *x, *dy, *aux;
  const uint8_t *index;
  Source kind;
  const Geometry *g;
  int64_t per_out;
  float *xp;
  int64_t xsample;
  float *gw;
  int64_t gstride, gsample, npos;
  float *bias_parts;
  float *dw;
  int64_t next_item;
  Chunks samples;
};

// First pass: chunks of the samples' padded inputs and output gradients.
void filter_inputs_part(void *ctx, int, int) {
  FilterTask &t = *static_cast<FilterTask *>(ctx);
  const Geometry &g = *t.g;
  int64_t first, last;
  while (t.samples.take(&first, &last)) {
    for (int64_t s = first; s < last; ++s) {
      pad_input(t.x + s * g.c * g.h * g.w, g, t.xp + s * t.xsample);
      gradient_at_output(t.dy + s * t.per_out, t.aux ? t.aux + s * t.per_out : nullptr,
                         t.index ? t.index + s * t.per_out : nullptr, t.kind, g,
                         t.gw + s * t.gsample, t.gstride, g.wp, 0, 0,
                         t.bias_parts ? t.bias_parts + s * g.co : nullptr);
    }
  }
}

// Second pass: the weights' sums, item by item as the threads come for them.
void filter_sums_part(void *ctx, int, int) {
  FilterTask &t = *static_cast<FilterTask *>(ctx);
  const int64_t items = t.g->c * t.g->kh * blocks_per_row(t.g->co);
  for (;;) {
    const int64_t item = __atomic_fetch_add(&t.next_item, 1, __ATOMIC_RELAXED);
    if (item >= items) return;
    filter_item(t.gw, t.gstride, t.gsample, t.xp, t.xsample, *t.g, t.npos, item, t.dw);
  }
}

// Inputs: x, the gradient source (dy; dy and y; or dy and the pooling index), w (for its
// shape only); outputs dw and,
// when there are bias gradients to give, db.
int backward_filter(int nparam, void **params, int *ndims, int64_t **shapes,
                    const char **dtypes, Source kind, bool same) {
  const int sources = kind == Source::kPlain ? 1 : 2;
  const int dwi = 2 + sources;  // after x, the sources and w (read for its shape only)
  const bool has_bias = nparam == dwi + 2;
  if (nparam != dwi + 1 && !has_bias) return 1;
  if (!is_f32(dtypes[0]) || !is_f32(dtypes[1]) || !is_f32(dtypes[dwi])) return 2;
  if (kind == Source::kPool ? !is_u8(dtypes[2]) : (sources == 2 && !is_f32(dtypes[2]))) return 2;
  Geometry g;
  if (!read_geometry(ndims, shapes, 0, dwi, same, &g)) return 3;
  const int64_t per_out = kind == Source::kPool ? g.co * (g.ho / 2) * (g.wo / 2)
                                                : g.co * g.ho * g.wo;
  for (int k = 1; k <= sources; ++k)
    if (count(ndims[k], shapes[k]) != g.n * per_out) return 4;
  const float *x = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  const float *aux = kind == Source::kRelu ? static_cast<const float *>(params[2]) : nullptr;
  const uint8_t *index = kind == Source::kPool ? static_cast<const uint8_t *>(params[2])
                                                : nullptr;
  float *dw = static_cast<float *>(params[dwi]);
  float *db = has_bias ? static_cast<float *>(params[dwi + 1]) : nullptr;
  // The gradient in the wide layout (row stride wp), zero past each row's wo columns and past
  // the last row, so the vectors may run over them.
  const int64_t npos = round_up(g.p, VL);
  const int64_t gstride = npos;
  // Every sample's padded input and gradient first, so that each weight's sum stays in a
  // register across the whole batch.
  const int64_t xsample = g.c * g.cs, gsample = g.co * gstride;
  float *xp = grow(&scratch_a, g.n * xsample);
  float *gw = grow(&scratch_b, g.n * gsample);
  // Each sample's bias gradient, summed in sample order at the end.
  float *bias_parts = has_bias ? grow(&scratch_c, g.n * g.co) : nullptr;
  if (!xp || !gw || (has_bias && !bias_parts)) return 6;
  FilterTask task{x, dy, aux, index, kind, &g, per_out, xp, xsample, gw, gstride, gsample,
                  npos, bias_parts, dw, 0, chunks_of(g.n)};
  run_parts(filter_inputs_part, &task, g.n);
  run_parts(filter_sums_part, &task, g.c * g.kh * blocks_per_row(g.co));
  for (int64_t o = 0; has_bias && o < g.co; ++o) {
    double sum = 0.0;
    for (int64_t s = 0; s < g.n; ++s) sum += bias_parts[s * g.co + o];
    db[o] = static_cast<float>(sum);
  }
  return 0;
}

struct InputTask {
  const float *dy, *aux;
  const uint8_t *index;
  Source kind;
  const Geometry *g;
  int64_t per_out;
  const float *w;
  float *dx;
  int failed;
  Chunks samples;
};

// col[t][p] = sum over o of w[o][t] * gc[o][p], for TB taps t0.. and PB vectors of positions
// p0.. (gc rows and col rows of `stride` floats; w rows of `taps`).
template <int TB, int PB>
void tap_block(const float *w, int64_t taps, int64_t co, const float *gc, int64_t stride,
               int64_t t0, int64_t p0, float *col) {
  vec acc[TB][PB];
  _Pragma("GCC unroll 16")
  for (int t = 0; t < TB; ++t)
    _Pragma("GCC unroll 16")
    for (int v = 0; v < PB; ++v) acc[t][v] = vzero();
  for (int64_t o = 0; o < co; ++o) {
    vec gv[PB];
    _Pragma("GCC unroll 16")
    for (int v = 0; v < PB; ++v) gv[v] = vload(gc + o * stride + p0 + v * VL);
    _Pragma("GCC unroll 16")
    for (int t = 0; t < TB; ++t) {
      const vec wv = vset1(w[o * taps + t0 + t]);
      _Pragma("GCC unroll 16")
      for (int v = 0; v < PB; ++v) acc[t][v] = vfma(wv, gv[v], acc[t][v]);
    }
  }
  _Pragma("GCC unroll 16")
  for (int t = 0; t < TB; ++t)
    _Pragma("GCC unroll 16")
    for (int v = 0; v < PB; ++v) vstore(col + (t0 + t) * stride + p0 + v * VL, acc[t][v]);
}

template <int TB>
void tap_rows(const float *w, int64_t taps, int64_t co, const float *gc, int64_t stride,
              int64_t t0, float *col) {
  constexpr int PB = 4;
  int64_t p0 = 0;
  for (; p0 + PB * VL <= stride; p0 += PB * VL)
    tap_block<TB, PB>(w, taps, co, gc, stride, t0, p0, col);
  switch ((stride - p0) / VL) {
    case 3: tap_block<TB, 3>(w, taps, co, gc, stride, t0, p0, col); break;
    case 2: tap_block<TB, 2>(w, taps, co, gc, stride, t0, p0, col); break;
    case 1: tap_block<TB, 1>(w, taps, co, gc, stride, t0, p0, col); break;
    default: break;
  }
}

// The input gradient of one sample as a product and a scatter: col[t][p] = sum over output
// channels o of w[o][t] * gc[o][p] (t the C x KH x KW taps, p the output positions on the wide
// grid of row stride Wp, gc the gradient at the convolution's output, zero past each row's Wo
// columns), then each tap's row of col added, whole vectors at a time, into the padded input's
// gradient dxp at the tap's offset, and dxp cropped into dx. About half the multiplications
// of correlating the gradient, padded all round, with the flipped weights.
void input_sample(const float *gc, int64_t stride, const float *w, const Geometry &g,
                  float *col, float *dxp, float *dx) {
  const int64_t taps = g.c * g.kh * g.kw, plane = g.hp * g.wp;
  int64_t t0 = 0;
  for (; t0 + TB_BWI <= taps; t0 += TB_BWI) tap_rows<TB_BWI>(w, taps, g.co, gc, stride, t0, col);
  for (; t0 < taps; ++t0) tap_rows<1>(w, taps, g.co, gc, stride, t0, col);
  // The rows of col are zero past each output row's Wo columns: their sums land in the padding
  // columns (or, for the last tap, up to `stride` floats past the plane: dxp has the room).
  fill(dxp, g.c * plane + stride, 0.0f);
  for (int64_t i = 0; i < g.c; ++i)
    for (int64_t a = 0; a < g.kh; ++a)
      for (int64_t b = 0; b < g.kw; ++b) {
        const float *src = col + ((i * g.kh + a) * g.kw + b) * stride;
        float *dst = dxp + i * plane + a * g.wp + b;
        for (int64_t p = 0; p < stride; p += VL) vstore(dst + p, vload(dst + p) + vload(src + p));
      }
  for (int64_t i = 0; i < g.c; ++i)
    for (int64_t h = 0; h < g.h; ++h)
      memcpy(dx + (i * g.h + h) * g.w, dxp + i * plane + (h + g.ph) * g.wp + g.pw,
             sizeof(float) * g.w);
}

// Chunks of the batch, sample by sample, in this thread's scratch buffers.
void input_part(void *ctx, int, int) {
  InputTask &t = *static_cast<InputTask *>(ctx);
  const Geometry &g = *t.g;
  const int64_t stride = round_up(g.ho * g.wp, VL), taps = g.c * g.kh * g.kw;
  float *gc, *col, *dxp;
  int64_t first, last;
  if (!scratch_pair(g.co * stride, taps * stride, &gc, &col, &t.failed)) return;
  dxp = grow(&scratch_c, g.c * g.hp * g.wp + stride);
  if (!dxp) {
    __atomic_store_n(&t.failed, 1, __ATOMIC_RELAXED);
    return;
  }
  while (t.samples.take(&first, &last)) {
    for (int64_t s = first; s < last; ++s) {
      gradient_at_output(t.dy + s * t.per_out, t.aux ? t.aux + s * t.per_out : nullptr,
                         t.index ? t.index + s * t.per_out : nullptr, t.kind, g, gc, stride,
                         g.wp, 0, 0, nullptr);
      input_sample(gc, stride, t.w, g, col, dxp, t.dx + s * g.c * g.h * g.w);
    }
  }
}

// Inputs: the gradient source, w, x (read for its shape only, which an odd size or "same"
// padding leaves ambiguous); output dx (see input_sample).
int backward_input(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                   Source kind, bool same) {
  const int sources = kind == Source::kPlain ? 1 : 2;
  const int wi = sources, dxi = sources + 2;  // input sources + 1: x, for its shape only
  if (nparam != sources + 3) return 1;
  if (!is_f32(dtypes[0]) || !is_f32(dtypes[wi]) || !is_f32(dtypes[dxi])) return 2;
  if (kind == Source::kPool ? !is_u8(dtypes[1]) : (sources == 2 && !is_f32(dtypes[1]))) return 2;
  Geometry g;
  if (!read_geometry(ndims, shapes, dxi, wi, same, &g)) return 3;
  const int64_t per_out = kind == Source::kPool ? g.co * (g.ho / 2) * (g.wo / 2)
                                                : g.co * g.ho * g.wo;
  for (int k = 0; k < sources; ++k)
    if (count(ndims[k], shapes[k]) != g.n * per_out) return 4;
  const float *dy = static_cast<const float *>(params[0]);
  const float *aux = kind == Source::kRelu ? static_cast<const float *>(params[1]) : nullptr;
  const uint8_t *index = kind == Source::kPool ? static_cast<const uint8_t *>(params[1])
                                                : nullptr;
  const float *w = static_cast<const float *>(params[wi]);
  float *dx = static_cast<float *>(params[dxi]);
  InputTask task{dy, aux, index, kind, &g, per_out, w, dx, 0, chunks_of(g.n)};
  run_parts(input_part, &task, g.n);
  return task.failed ? 6 : 0;
}

// ---- Momentum SGD over several tensors at once, in place, as MindSpore's ApplyMomentum:
// accum = accum * momentum + grad, then weight -= lr * accum (Nesterov: weight -= grad * lr +
// accum * momentum * lr). One operator instead of one per tensor: the update of a small
// network's weights costs less than launching its operators.

struct MomentumTask {
  float lr, momentum;
  bool nesterov;
  int tensors;
  float *const *weight, *const *accum;
  const float *const *grad;
  const int64_t *size;  // elements of each tensor
  int64_t total;
  Chunks elements;
};

void momentum_range(const MomentumTask &t, int64_t first, int64_t last) {
  int64_t offset = 0;  // of tensor i in the concatenation of all
  for (int i = 0; i < t.tensors; offset += t.size[i], ++i) {
    const int64_t begin = max_of(first - offset, int64_t(0));
    const int64_t end = min_of(last - offset, t.size[i]);
    float *w = t.weight[i], *a = t.accum[i];
    const float *g = t.grad[i];
    const float lr = t.lr, m = t.momentum;
    if (t.nesterov) {
      for (int64_t k = begin; k < end; ++k) {
        a[k] = a[k] * m + g[k];
        w[k] -= g[k] * lr + a[k] * m * lr;
      }
    } else {
      for (int64_t k = begin; k < end; ++k) {
        a[k] = a[k] * m + g[k];
        w[k] -= lr * a[k];
      }
    }
  }
}

void momentum_part(void *ctx, int, int) {
  MomentumTask &t = *static_cast<MomentumTask *>(ctx);
  int64_t first, last;
  while (t.elements.take(&first, &last)) momentum_range(t, first, last);
}

constexpr int kMaxUpdateTensors = 1024;
constexpr int64_t kUpdateChunk = 1 << 14;  // elements a thread claims at a time

// Inputs: lr and momentum (one float each), then the k weights, the k accumulations and the
// k gradients (the same shapes, tensor by tensor); output: one float, 0. Weights and
// accumulations are written in place.
int update_momentum(int nparam, void **params, int *ndims, int64_t **shapes,
                    const char **dtypes, bool nesterov) {
  const int k = (nparam - 3) / 3;
  if (k < 1 || k > kMaxUpdateTensors || nparam != 3 * k + 3) return 1;
  for (int q = 0; q < nparam; ++q)
    if (!is_f32(dtypes[q])) return 2;
  if (count(ndims[0], shapes[0]) != 1 || count(ndims[1], shapes[1]) != 1 ||
      count(ndims[nparam - 1], shapes[nparam - 1]) != 1)
    return 4;
  float *weight[kMaxUpdateTensors], *accum[kMaxUpdateTensors];
  const float *grad[kMaxUpdateTensors];
  int64_t size[kMaxUpdateTensors], total = 0;
  for (int i = 0; i < k; ++i) {
    const int wi = 2 + i, ai = 2 + k + i, gi = 2 + 2 * k + i;
    size[i] = count(ndims[wi], shapes[wi]);
    if (count(ndims[ai], shapes[ai]) != size[i] || count(ndims[gi], shapes[gi]) != size[i])
      return 4;
    weight[i] = static_cast<float *>(params[wi]);
    accum[i] = static_cast<float *>(params[ai]);
    grad[i] = static_cast<const float *>(params[gi]);
    total += size[i];
  }
  MomentumTask task{*static_cast<const float *>(params[0]), *static_cast<const float *>(params[1]),
                    nesterov, k, weight, accum, grad, size, total,
                    Chunks{total, kUpdateChunk, 0}};
  run_parts(momentum_part, &task, total / kUpdateChunk);
  *static_cast<float *>(params[nparam - 1]) = 0.0f;
  return 0;
}

// ---- A training step's counts, in place: the loss summed in float64, the correct predictions
// (each row's first largest logit against its label), the samples and the steps. One operator
// instead of the eight or so MindSpore's would take for the same sums.

bool is_f64(const char *t) { return t && strcmp(t, "float64") == 0; }
bool is_i64(const char *t) { return t && strcmp(t, "int64") == 0; }
bool is_i32(const char *t) { return t && strcmp(t, "int32") == 0; }

// Inputs: logits [B, C] (float32), labels [B] (int32 or int64), the loss (one float32), then
// the counts written in place: loss sum (float64), correct, samples and steps (int64 each);
// output: one float, 0.
int count_step(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes) {
  if (nparam != 8 || ndims[0] != 2) return 1;
  const bool wide_labels = is_i64(dtypes[1]);
  if (!is_f32(dtypes[0]) || !(wide_labels || is_i32(dtypes[1])) || !is_f32(dtypes[2]) ||
      !is_f64(dtypes[3]) || !is_i64(dtypes[4]) || !is_i64(dtypes[5]) || !is_i64(dtypes[6]) ||
      !is_f32(dtypes[7]))
    return 2;
  const int64_t b = shapes[0][0], c = shapes[0][1];
  if (count(ndims[1], shapes[1]) != b || count(ndims[2], shapes[2]) != 1 || c < 1) return 4;
  for (int k = 3; k < 8; ++k)
    if (count(ndims[k], shapes[k]) != 1) return 4;
  const float *logits = static_cast<const float *>(params[0]);
  int64_t correct = 0;
  for (int64_t n = 0; n < b; ++n) {
    const float *row = logits + n * c;
    int64_t best = 0;
    for (int64_t k = 1; k < c; ++k) best = row[k] > row[best] ? k : best;
    const int64_t label = wide_labels ? static_cast<const int64_t *>(params[1])[n]
                                      : static_cast<const int32_t *>(params[1])[n];
    correct += best == label;
  }
  *static_cast<double *>(params[3]) += static_cast<double>(*static_cast<const float *>(params[2]));
  *static_cast<int64_t *>(params[4]) += correct;
  *static_cast<int64_t *>(params[5]) += b;
  *static_cast<int64_t *>(params[6]) += 1;
  *static_cast<float *>(params[7]) = 0.0f;
  return 0;
}

}  // namespace

#define MS_AOT_ARGS \
  int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *

#define CONV_ENTRIES(NAME, KIND, RELU)                                                       \
  extern "C" int NAME##_fwd_valid(MS_AOT_ARGS) {                                             \
    return forward(nparam, params, ndims, shapes, dtypes, KIND, RELU, false);                \
  }                                                                                          \
  extern "C" int NAME##_fwd_same(MS_AOT_ARGS) {                                              \
    return forward(nparam, params, ndims, shapes, dtypes, KIND, RELU, true);                 \
  }                                                                                          \
  extern "C" int NAME##_bwd_filter_valid(MS_AOT_ARGS) {                                      \
    return backward_filter(nparam, params, ndims, shapes, dtypes, KIND, false);              \
  }                                                                                          \
  extern "C" int NAME##_bwd_filter_same(MS_AOT_ARGS) {                                       \
    return backward_filter(nparam, params, ndims, shapes, dtypes, KIND, true);               \
  }                                                                                          \
  extern "C" int NAME##_bwd_input_valid(MS_AOT_ARGS) {                                       \
    return backward_input(nparam, params, ndims, shapes, dtypes, KIND, false);               \
  }                                                                                          \
  extern "C" int NAME##_bwd_input_same(MS_AOT_ARGS) {                                        \
    return backward_input(nparam, params, ndims, shapes, dtypes, KIND, true);                \
  }

// conv: the convolution (plus bias); conv_relu: with a ReLU; conv_relu_pool: with a ReLU and a
// 2x2 max pooling (outputs the pooled values and each window's index, 4 where the ReLU closed it).
CONV_ENTRIES(conv, Source::kPlain, false)
CONV_ENTRIES(conv_relu, Source::kRelu, true)
CONV_ENTRIES(conv_relu_pool, Source::kPool, true)

// 2x2 max pooling of x [N, C, H, W] into y [N, C, H/2, W/2] and each window's index 0-3 (the
// last row or column of an odd size is dropped, as MindSpore's MaxPool does).
extern "C" int maxpool2x2_fwd(MS_AOT_ARGS) {
  if (nparam != 3 || ndims[0] != 4 || !is_f32(dtypes[0]) || !is_f32(dtypes[1]) ||
      !is_u8(dtypes[2]))
    return 1;
  const int64_t nc = shapes[0][0] * shapes[0][1], h = shapes[0][2], w = shapes[0][3];
  const int64_t hq = h / 2, wq = w / 2;
  if (count(ndims[1], shapes[1]) != nc * hq * wq || count(ndims[2], shapes[2]) != nc * hq * wq)
    return 4;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  uint8_t *index = static_cast<uint8_t *>(params[2]);
  for (int64_t c = 0; c < nc; ++c) {
    for (int64_t i = 0; i < hq; ++i) {
      const float *r0 = x + (c * h + 2 * i) * w, *r1 = r0 + w;
      for (int64_t j = 0; j < wq; ++j) {
        const int64_t k = (c * hq + i) * wq + j;
        pool_window(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1], false, y + k, index + k);
      }
    }
  }
  return 0;
}

// Inputs dy [N, C, H/2, W/2], the index and x (for its shape only); output dx [N, C, H, W]:
// each window's gradient at the position of its maximum, zero elsewhere.
extern "C" int maxpool2x2_bwd(MS_AOT_ARGS) {
  if (nparam != 4 || ndims[3] != 4 || !is_f32(dtypes[0]) || !is_u8(dtypes[1]) ||
      !is_f32(dtypes[3]))
    return 1;
  const int64_t nc = shapes[3][0] * shapes[3][1], h = shapes[3][2], w = shapes[3][3];
  const int64_t hq = h / 2, wq = w / 2;
  if (count(ndims[0], shapes[0]) != nc * hq * wq || count(ndims[1], shapes[1]) != nc * hq * wq)
    return 4;
  const float *dy = static_cast<const float *>(params[0]);
  const uint8_t *index = static_cast<const uint8_t *>(params[1]);
  float *dx = static_cast<float *>(params[3]);
  fill(dx, nc * h * w, 0.0f);
  for (int64_t c = 0; c < nc; ++c) {
    for (int64_t i = 0; i < hq; ++i) {
      for (int64_t j = 0; j < wq; ++j) {
        const int64_t k = (c * hq + i) * wq + j;
        if (index[k] > 3) continue;
        dx[(c * h + 2 * i + (index[k] >> 1)) * w + 2 * j + (index[k] & 1)] = dy[k];
      }
    }
  }
  return 0;
}

// ---- Dense layers: y = x W^T + b, optionally with a ReLU (x [N, K], W [M, K], b [M]).

namespace {

// The dot product of two rows of k floats: whole vectors first, lane by lane at the end, then
// the tail one float at a time; the same order on every call.
inline float dot(const float *a, const float *b, int64_t k) {
  vec acc = vzero();
  int64_t j = 0;
  for (; j + VL <= k; j += VL) acc = vfma(vload(a + j), vload(b + j), acc);
  float sum = vsum(acc);
  for (; j < k; ++j) sum += a[j] * b[j];
  return sum;
}

// Four samples by four outputs at a time (16 sums in registers), each sum as dot() gives it.
void dense_rows(const float *x, const float *w, const float *b, bool relu, int64_t n0,
                int64_t n1, int64_t m, int64_t k, float *y) {
  const int64_t kv = k / VL * VL;
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    int64_t o = 0;
    for (; o + 4 <= m; o += 4) {
      vec acc[4][4];
      _Pragma("GCC unroll 4")
      for (int r = 0; r < 4; ++r)
        _Pragma("GCC unroll 4")
        for (int c = 0; c < 4; ++c) acc[r][c] = vzero();
      for (int64_t j = 0; j < kv; j += VL) {
        vec xv[4], wv[4];
        _Pragma("GCC unroll 4")
        for (int r = 0; r < 4; ++r) xv[r] = vload(x + (n + r) * k + j);
        _Pragma("GCC unroll 4")
        for (int c = 0; c < 4; ++c) wv[c] = vload(w + (o + c) * k + j);
        _Pragma("GCC unroll 4")
        for (int r = 0; r < 4; ++r)
          _Pragma("GCC unroll 4")
          for (int c = 0; c < 4; ++c) acc[r][c] = vfma(xv[r], wv[c], acc[r][c]);
      }
      for (int r = 0; r < 4; ++r) {
        for (int c = 0; c < 4; ++c) {
          float sum = vsum(acc[r][c]);
          for (int64_t j = kv; j < k; ++j) sum += x[(n + r) * k + j] * w[(o + c) * k + j];
          if (b) sum += b[o + c];
          y[(n + r) * m + o + c] = relu && !(sum > 0.0f) ? 0.0f : sum;
        }
      }
    }
    for (; o < m; ++o) {
      for (int r = 0; r < 4; ++r) {
        float sum = dot(x + (n + r) * k, w + o * k, k);
        if (b) sum += b[o];
        y[(n + r) * m + o] = relu && !(sum > 0.0f) ? 0.0f : sum;
      }
    }
  }
  for (; n < n1; ++n) {
    for (int64_t o = 0; o < m; ++o) {
      float sum = dot(x + n * k, w + o * k, k);
      if (b) sum += b[o];
      y[n * m + o] = relu && !(sum > 0.0f) ? 0.0f : sum;
    }
  }
}

struct DenseTask {
  const float *x, *w, *b;
  bool relu;
  int64_t n, m, k;
  float *y;
  // The backward pass: the output gradient (after the ReLU's cut), and the gradients out.
  const float *g;
  float *dx, *dw, *db;
  Chunks rows, outputs;  // of x and y (dx); of W (dW and db)
};

void dense_forward_part(void *ctx, int, int) {
  DenseTask &t = *static_cast<DenseTask *>(ctx);
  int64_t first, last;
  while (t.rows.take(&first, &last))
    dense_rows(t.x, t.w, t.b, t.relu, first, last, t.m, t.k, t.y);
}

// out[r][j] = sum over q < nq of coef[r * row + q * step] * mat[q][j] (mat rows of k floats), for
// rows r0..r1, the sum over q in increasing order; four rows at a time, so each row of mat
// loaded serves eight sums in registers.
void weighted_rows(const float *coef, int64_t row, int64_t step, const float *mat, int64_t nq,
                   int64_t k, int64_t r0, int64_t r1, float *out) {
  const int64_t kv = k / VL * VL;
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    int64_t j = 0;
    for (; j + 2 * VL <= kv; j += 2 * VL) {
      vec acc[4][2];
      _Pragma("GCC unroll 4")
      for (int i = 0; i < 4; ++i) acc[i][0] = acc[i][1] = vzero();
      for (int64_t q = 0; q < nq; ++q) {
        const vec m0 = vload(mat + q * k + j), m1 = vload(mat + q * k + j + VL);
        _Pragma("GCC unroll 4")
        for (int i = 0; i < 4; ++i) {
          const vec c = vset1(coef[(r + i) * row + q * step]);
          acc[i][0] = vfma(c, m0, acc[i][0]);
          acc[i][1] = vfma(c, m1, acc[i][1]);
        }
      }
      for (int i = 0; i < 4; ++i) {
        vstore(out + (r + i) * k + j, acc[i][0]);
        vstore(out + (r + i) * k + j + VL, acc[i][1]);
      }
    }
    for (; j < kv; j += VL) {
      vec acc[4];
      for (int i = 0; i < 4; ++i) acc[i] = vzero();
      for (int64_t q = 0; q < nq; ++q) {
        const vec m0 = vload(mat + q * k + j);
        for (int i = 0; i < 4; ++i)
          acc[i] = vfma(vset1(coef[(r + i) * row + q * step]), m0, acc[i]);
      }
      for (int i = 0; i < 4; ++i) vstore(out + (r + i) * k + j, acc[i]);
    }
    for (int i = 0; i < 4; ++i) {
      for (int64_t jj = kv; jj < k; ++jj) {
        float sum = 0.0f;
        for (int64_t q = 0; q < nq; ++q) sum += coef[(r + i) * row + q * step] * mat[q * k + jj];
        out[(r + i) * k + jj] = sum;
      }
    }
  }
  for (; r < r1; ++r) {
    int64_t j = 0;
    for (; j < kv; j += VL) {
      vec acc = vzero();
      for (int64_t q = 0; q < nq; ++q)
        acc = vfma(vset1(coef[r * row + q * step]), vload(mat + q * k + j), acc);
      vstore(out + r * k + j, acc);
    }
    for (; j < k; ++j) {
      float sum = 0.0f;
      for (int64_t q = 0; q < nq; ++q) sum += coef[r * row + q * step] * mat[q * k + j];
      out[r * k + j] = sum;
    }
  }
}

// dx [N, K] = g [N, M] W [M, K] for rows n0..n1 (sums over m), and dW [M, K] = g^T x, db =
// column sums of g for outputs o0..o1 (sums over n), each sum in increasing order.
void dense_backward_part(void *ctx, int, int) {
  DenseTask &t = *static_cast<DenseTask *>(ctx);
  int64_t first, last;
  while (t.rows.take(&first, &last))
    weighted_rows(t.g, t.m, 1, t.w, t.m, t.k, first, last, t.dx);
  while (t.outputs.take(&first, &last)) {
    weighted_rows(t.g, 1, t.m, t.x, t.n, t.k, first, last, t.dw);
    for (int64_t o = first; t.db && o < last; ++o) {
      float sum = 0.0f;
      for (int64_t n = 0; n < t.n; ++n) sum += t.g[n * t.m + o];
      t.db[o] = sum;
    }
  }
}

// Checks x [N, K] and W [M, K] (indices xi, wi) and reads N, M and K.
bool read_dense(int *ndims, int64_t **shapes, int xi, int wi, int64_t *n, int64_t *m,
                int64_t *k) {
  if (ndims[xi] != 2 || ndims[wi] != 2 || shapes[xi][1] != shapes[wi][1]) return false;
  *n = shapes[xi][0];
  *m = shapes[wi][0];
  *k = shapes[wi][1];
  return *n >= 0 && *m > 0 && *k > 0;
}

// Inputs x, W and optionally b; output y [N, M].
int dense_forward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                  bool relu) {
  const bool has_bias = nparam == 4;
  if (nparam != 3 && !has_bias) return 1;
  for (int k = 0; k < nparam; ++k)
    if (!is_f32(dtypes[k])) return 2;
  int64_t n, m, k;
  if (!read_dense(ndims, shapes, 0, 1, &n, &m, &k)) return 3;
  const int yi = nparam - 1;
  if (has_bias && count(ndims[2], shapes[2]) != m) return 4;
  if (count(ndims[yi], shapes[yi]) != n * m) return 4;
  DenseTask task{static_cast<const float *>(params[0]), static_cast<const float *>(params[1]),
                 has_bias ? static_cast<const float *>(params[2]) : nullptr, relu, n, m, k,
                 static_cast<float *>(params[yi]), nullptr, nullptr, nullptr, nullptr,
                 chunks_of(n, 4), Chunks{0, 1, 0}};
  run_parts(dense_forward_part, &task, n / 4);
  return 0;
}

// Inputs dy [N, M], (with the ReLU) y [N, M], x [N, K], W [M, K]; outputs dx [N, K], dW [M, K]
// and, when there is a bias, db [M].
int dense_backward(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                   bool relu) {
  const int inputs = relu ? 4 : 3;
  const bool has_bias = nparam == inputs + 3;
  if (nparam != inputs + 2 && !has_bias) return 1;
  for (int k = 0; k < nparam; ++k)
    if (!is_f32(dtypes[k])) return 2;
  const int xi = inputs - 2, wi = inputs - 1;
  int64_t n, m, k;
  if (!read_dense(ndims, shapes, xi, wi, &n, &m, &k)) return 3;
  for (int s = 0; s < inputs - 2; ++s)
    if (count(ndims[s], shapes[s]) != n * m) return 4;
  if (count(ndims[inputs], shapes[inputs]) != n * k ||
      count(ndims[inputs + 1], shapes[inputs + 1]) != m * k ||
      (has_bias && count(ndims[inputs + 2], shapes[inputs + 2]) != m))
    return 4;
  const float *dy = static_cast<const float *>(params[0]);
  const float *g = dy;
  if (relu) {  // the gradient through the ReLU: zero where its output was not above 0
    const float *y = static_cast<const float *>(params[1]);
    float *cut = grow(&scratch_a, n * m);
    if (!cut) return 6;
    for (int64_t q = 0; q < n * m; ++q) cut[q] = y[q] > 0.0f ? dy[q] : 0.0f;
    g = cut;
  }
  DenseTask task{static_cast<const float *>(params[xi]), static_cast<const float *>(params[wi]),
                 nullptr, relu, n, m, k, nullptr, g, static_cast<float *>(params[inputs]),
                 static_cast<float *>(params[inputs + 1]),
                 has_bias ? static_cast<float *>(params[inputs + 2]) : nullptr,
                 chunks_of(n, 4), chunks_of(m, 4)};
  run_parts(dense_backward_part, &task, min_of(n, m));
  return 0;
}

}  // namespace

// dense: x W^T (+ b); dense_relu: with a ReLU after it.
extern "C" int dense_fwd(MS_AOT_ARGS) {
  return dense_forward(nparam, params, ndims, shapes, dtypes, false);
}
extern "C" int dense_relu_fwd(MS_AOT_ARGS) {
  return dense_forward(nparam, params, ndims, shapes, dtypes, true);
}
extern "C" int dense_bwd(MS_AOT_ARGS) {
  return dense_backward(nparam, params, ndims, shapes, dtypes, false);
}
extern "C" int dense_relu_bwd(MS_AOT_ARGS) {
  return dense_backward(nparam, params, ndims, shapes, dtypes, true);
}

// momentum_update: MindSpore's ApplyMomentum over all tensors; with Nesterov's correction.
extern "C" int momentum_update(MS_AOT_ARGS) {
  return update_momentum(nparam, params, ndims, shapes, dtypes, false);
}
extern "C" int momentum_nesterov_update(MS_AOT_ARGS) {
  return update_momentum(nparam, params, ndims, shapes, dtypes, true);
}

// step_counts: a training step's loss sum, correct predictions, samples and steps, in place.
extern "C" int step_counts(MS_AOT_ARGS) {
  return count_step(nparam, params, ndims, shapes, dtypes);
}

// Sets the most threads one call may use (limit > 0; tests compare 1 with more) and returns the
// number a call uses now, starting the workers if they have not started.
extern "C" int mstrain_kernels_threads(int limit) {
  if (load(&pool.parts) == 0) start_pool();
  if (limit > 0) __atomic_store_n(&pool.limit, limit, __ATOMIC_RELEASE);
  return min_of(load(&pool.parts), load(&pool.limit));
}

// The instruction set this file was compiled for, for the loader to report.
extern "C" const char *mstrain_kernels_isa() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
  return "avx2";
#else
  return "generic";
#endif
}
