// Fused sliding-window softmax attention on the CPU: forward and backward, float32 and float64.
//
// Query i sees keys max(0, i - left) ... min(n_k - 1, i + right) (top-left aligned). Queries go in
// blocks of BQ rows, each block in groups of MR rows; a group computes scores only against the
// key panels (PW keys each) its rows reach, so a row computes at most left + right + MR + 2·PW
// scores for the left + right + 1 it needs. Scores, softmax and the weighted sum of one block
// stay in a tile of BQ × WMAX values in the core's cache:
//
//     S = Q K_bandᵀ (raw dots)   y = scale·S   m = max y   p = exp(y - m) / Σ exp(y - m)
//     O = P V_band               lse = m + log Σ exp(y - m)     (row without keys: O = 0, lse = +inf)
//
// Backward (δ_i = dO_i · O_i):  dP = dO V_bandᵀ,  dS = P ∘ (dP - δ),
//     dQ = scale · dS K_band,  dK_band += scale · dSᵀ Q,  dV_band += Pᵀ dO.
// P comes from the weights the training forward kept (``kept``), or is recomputed from lse.
//
// Every product is one register-blocked micro-kernel C[MR × NV·L] (+)= Σ_k A(r, k) B(k, ·): A is
// read one scalar at a time (any strides), B as vectors of L contiguous lanes. Keys are packed in
// panels (panel, d, PW) so that Q Kᵀ and dO Vᵀ read B contiguously too. Vectors are GCC vector
// extensions of 64 bytes (AVX-512 registers where the machine has them, split by the compiler
// otherwise). Threads: at::parallel_for over blocks (forward) or over segments of blocks whose
// key ranges do not overlap (backward, even segments then odd), so no two threads add into the
// same dK/dV row.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(64)));
  typedef int32_t itype __attribute__((vector_size(64)));
  typedef int32_t index;
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(64)));
  typedef int64_t itype __attribute__((vector_size(64)));
  typedef int64_t index;
};
template <typename T>
using vec = typename VecOf<T>::type;
template <typename T>
using ivec = typename VecOf<T>::itype;
template <typename T>
using lane_t = typename VecOf<T>::index;
template <typename T>
constexpr int L = 64 / sizeof(T);  // lanes per vector; also the key panel width

constexpr int BQ = 32;  // query rows per block (one tile)
constexpr int MR = 8;   // query rows per micro-kernel call
constexpr int NV = 2;   // vectors per micro-kernel row in Q Kᵀ and dO Vᵀ (key panels)
constexpr int NW = 2;   // ... in P V, dS K, Pᵀ dO and dSᵀ Q (columns of d)

template <typename T>
inline vec<T> load(const T* p) {
  vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
inline void store(T* p, vec<T> v) {
  std::memcpy(p, &v, sizeof v);
}
template <typename T>
inline vec<T> splat(T x) {  // a broadcast: x - 0.0 = x exactly, so no subtraction is emitted
  return x - vec<T>{};
}
template <typename T>
inline ivec<T> iota() {
  ivec<T> v;
  for (int i = 0; i < L<T>; ++i) v[i] = i;
  return v;
}

// exp on lanes x <= 0 (x - max); float: Cephes' expf polynomial after Cody-Waite reduction.
inline vec<float> vexp(vec<float> x) {
  x = x < -87.0f ? splat(-87.0f) : x;
  vec<float> fx = x * 1.44269504088896341f;
  const float magic = 12582912.0f;  // 1.5·2^23: adding it rounds to the nearest integer
  vec<float> n = (fx + magic) - magic;
  vec<float> r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vec<float> p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  ivec<float> e = (__builtin_convertvector(n, ivec<float>) + 127) << 23;
  return p * (vec<float>)e;
}
inline vec<double> vexp(vec<double> x) {  // float64 is the exact path, not the fast one
  vec<double> y;
  for (int i = 0; i < L<double>; ++i) y[i] = std::exp(x[i]);
  return y;
}

// acc[r][v] = Σ_k a[r·ars + k·aks] · b[v][k·bks ... + L). The sums live in locals: written
// through ``acc`` inside the loop, they could alias a and b and would go to memory each step.
template <typename T, int R, int V, int VM>
inline void kernel(int64_t K, const T* a, int64_t ars, int64_t aks, const T* const* b, int64_t bks,
                   vec<T> (&acc)[MR][VM]) {
  vec<T> c[R][V];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) c[r][v] = vec<T>{};
  const T* bp[V];
  for (int v = 0; v < V; ++v) bp[v] = b[v];
  for (int64_t k = 0; k < K; ++k) {
    vec<T> bv[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) bv[v] = load(bp[v] + k * bks);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      vec<T> ar = splat(a[r * ars + k * aks]);
#pragma GCC unroll 2
      for (int v = 0; v < V; ++v) c[r][v] += ar * bv[v];
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < V; ++v) acc[r][v] = c[r][v];
}

template <typename T, int V, int VM>
inline void kernel_rows(int rows, int64_t K, const T* a, int64_t ars, int64_t aks, const T* const* b,
                        int64_t bks, vec<T> (&acc)[MR][VM]) {
  switch (rows) {
    case 8: kernel<T, 8, V, VM>(K, a, ars, aks, b, bks, acc); break;
    case 7: kernel<T, 7, V, VM>(K, a, ars, aks, b, bks, acc); break;
    case 6: kernel<T, 6, V, VM>(K, a, ars, aks, b, bks, acc); break;
    case 5: kernel<T, 5, V, VM>(K, a, ars, aks, b, bks, acc); break;
    case 4: kernel<T, 4, V, VM>(K, a, ars, aks, b, bks, acc); break;
    case 3: kernel<T, 3, V, VM>(K, a, ars, aks, b, bks, acc); break;
    case 2: kernel<T, 2, V, VM>(K, a, ars, aks, b, bks, acc); break;
    default: kernel<T, 1, V, VM>(K, a, ars, aks, b, bks, acc); break;
  }
}

// One C tile of ``rows`` × nv·L (nv <= VM): acc = Σ_k A B, then C = alpha·acc (add: C += …).
// B vector v of row k is at b[v] + k·bks.
template <typename T, int VM>
inline void product(int rows, int nv, int64_t K, const T* a, int64_t ars, int64_t aks,
                    const T* const* b, int64_t bks, T* c, int64_t crs, T alpha, bool add) {
  vec<T> acc[MR][VM];
  if constexpr (VM >= 3) {
    if (nv == 3) kernel_rows<T, 3, VM>(rows, K, a, ars, aks, b, bks, acc);
  }
  if constexpr (VM >= 4) {
    if (nv == 4) kernel_rows<T, 4, VM>(rows, K, a, ars, aks, b, bks, acc);
  }
  if (nv == 2) kernel_rows<T, 2, VM>(rows, K, a, ars, aks, b, bks, acc);
  if (nv == 1) kernel_rows<T, 1, VM>(rows, K, a, ars, aks, b, bks, acc);
  for (int r = 0; r < rows; ++r)
    for (int v = 0; v < nv; ++v) {
      T* p = c + r * crs + v * L<T>;
      vec<T> x = acc[r][v] * alpha;
      store(p, add ? load(p) + x : x);
    }
}

struct Geometry {
  int64_t nq, nk, d, left, right, panels, blocks, wmax;
  int pw;
  // keys of query rows i0 ... i1 - 1: [lo, hi), empty when lo >= hi
  int64_t lo(int64_t i0) const { return std::max<int64_t>(0, i0 - left); }
  int64_t hi(int64_t i1) const { return std::min<int64_t>(nk, i1 - 1 + right + 1); }
};

template <typename T>
Geometry geometry(int64_t nq, int64_t nk, int64_t d, int64_t left, int64_t right) {
  Geometry g;
  g.nq = nq, g.nk = nk, g.d = d, g.left = left, g.right = right, g.pw = L<T>;
  g.panels = (nk + L<T> - 1) / L<T>;
  g.blocks = (nq + BQ - 1) / BQ;
  g.wmax = L<T> * ((BQ + left + right + L<T> - 1) / L<T> + 1);
  return g;
}

// (n, d) rows -> panels (panel, d, PW): key j of panel p at [p][·][j - p·PW]; zeros past n.
template <typename T>
void pack(const T* x, T* out, int64_t n, int64_t d, int64_t panels) {
  for (int64_t p = 0; p < panels; ++p) {
    T* dst = out + p * d * L<T>;
    for (int j = 0; j < L<T>; ++j) {
      int64_t row = p * L<T> + j;
      if (row < n) {
        const T* src = x + row * d;
        for (int64_t c = 0; c < d; ++c) dst[c * L<T> + j] = src[c];
      } else {
        for (int64_t c = 0; c < d; ++c) dst[c * L<T> + j] = T(0);
      }
    }
  }
}

// scores of the group rows r0 ... r0 + rows - 1 against panels [plo, phi): raw dots into tile
template <typename T>
void dots(const Geometry& g, const T* a_rows, const T* packed, int64_t plo, int64_t phi, int64_t pb,
          int rows, T* tile) {
  const int64_t panel = g.d * L<T>;
  for (int64_t p = plo; p < phi; p += NV) {
    int nv = (int)std::min<int64_t>(NV, phi - p);
    const T* b[NV];
    for (int v = 0; v < NV; ++v) b[v] = packed + (p + v) * panel;
    product<T, NV>(rows, nv, g.d, a_rows, g.d, 1, b, L<T>, tile + (p - pb) * L<T>, g.wmax, T(1),
                   false);
  }
}

inline void fill(float* p, int64_t n, float x) { std::fill(p, p + n, x); }
inline void fill(double* p, int64_t n, double x) { std::fill(p, p + n, x); }

// One row's weights over tile columns [cl, ch) whose keys ca ... cb are in the band (and, with
// ``kv``, have kv[column] != 0: a key mask): the raw dots there become p (or exp(y - lse) when
// lse is given); all other columns of [0, w) become 0. Returns lse (+inf: no key allowed).
template <typename T>
T softmax_row(T* row, int64_t w, int64_t cl, int64_t ch, int64_t ca, int64_t cb, T scale,
              const T* given_lse, const lane_t<T>* kv) {
  fill(row, cl, T(0));
  fill(row + ch, w - ch, T(0));
  const T inf = std::numeric_limits<T>::infinity();
  if (ca > cb || (given_lse && std::isinf(*given_lse))) {
    fill(row + cl, ch - cl, T(0));
    return inf;
  }
  const ivec<T> lane = iota<T>();
  auto allowed = [&](int64_t c) {
    ivec<T> idx = lane + (lane_t<T>)c;
    ivec<T> ok = idx >= (lane_t<T>)ca && idx <= (lane_t<T>)cb;
    if (kv) {
      ivec<T> k;
      std::memcpy(&k, kv + c, sizeof k);
      ok = ok && k != 0;
    }
    return ok;
  };
  T m = -inf;
  if (!given_lse) {
    vec<T> vm = splat(-inf);
    for (int64_t c = cl; c < ch; c += L<T>) {
      vec<T> y = load(row + c) * scale;
      vm = allowed(c) ? (y > vm ? y : vm) : vm;
    }
    for (int i = 0; i < L<T>; ++i) m = std::max(m, vm[i]);
    if (m == -inf) {  // the key mask left none of the band
      fill(row + cl, ch - cl, T(0));
      return inf;
    }
  } else {
    m = *given_lse;
  }
  vec<T> vs = vec<T>{};
  for (int64_t c = cl; c < ch; c += L<T>) {
    vec<T> e = vexp(load(row + c) * scale - m);
    e = allowed(c) ? e : vec<T>{};
    store(row + c, e);
    vs += e;
  }
  if (given_lse) return m;
  T s = 0;
  for (int i = 0; i < L<T>; ++i) s += vs[i];
  const T inv = T(1) / s;
  for (int64_t c = cl; c < ch; c += L<T>) store(row + c, load(row + c) * inv);
  return m + std::log(s);
}

// Weights P of block ``blk`` of one head into ``tile`` (BQ × wmax); lse out (forward) or in.
template <typename T>
void block_weights(const Geometry& g, const T* q, const T* kp, const lane_t<T>* keys, int64_t blk,
                   T scale, T* tile, T* lse, bool lse_given) {
  const int64_t i0 = blk * BQ, rows = std::min<int64_t>(BQ, g.nq - i0);
  const int64_t pb = g.lo(i0) / L<T>;
  for (int64_t r0 = 0; r0 < rows; r0 += MR) {
    const int gr = (int)std::min<int64_t>(MR, rows - r0);
    const int64_t lo = g.lo(i0 + r0), hi = g.hi(i0 + r0 + gr);
    int64_t plo = lo / L<T>, phi = (hi + L<T> - 1) / L<T>;
    if (lo >= hi) plo = phi = pb;
    if (plo < phi) dots<T>(g, q + (i0 + r0) * g.d, kp, plo, phi, pb, gr, tile + r0 * g.wmax);
    for (int r = 0; r < gr; ++r) {
      const int64_t i = i0 + r0 + r;
      const int64_t a = std::max<int64_t>(0, i - g.left), b = std::min<int64_t>(g.nk - 1, i + g.right);
      T* row = tile + (r0 + r) * g.wmax;
      T s = softmax_row<T>(row, g.wmax, (plo - pb) * L<T>, (phi - pb) * L<T>, a - pb * L<T>,
                           b - pb * L<T>, scale, lse_given ? lse + i : nullptr,
                           keys ? keys + pb * L<T> : nullptr);
      if (!lse_given) lse[i] = s;
    }
  }
}

// C rows (rows × d) (+)= alpha · A (rows × K, strides ars, aks) · B (K rows of stride d)
template <typename T>
void times_rows(const Geometry& g, int rows, int64_t K, const T* a, int64_t ars, int64_t aks,
                const T* b, T* c, T alpha, bool add) {
  for (int64_t c0 = 0; c0 < g.d; c0 += NW * L<T>) {
    int nv = (int)std::min<int64_t>(NW, (g.d - c0) / L<T>);
    const T* bs[NW];
    for (int v = 0; v < NW; ++v) bs[v] = b + c0 + v * L<T>;
    product<T, NW>(rows, nv, K, a, ars, aks, bs, g.d, c + c0, g.d, alpha, add);
  }
}

template <typename T>
void forward_block(const Geometry& g, const T* q, const T* kp, const T* v, const lane_t<T>* keys,
                   int64_t blk, T scale, T* tile, T* out, T* lse) {
  block_weights<T>(g, q, kp, keys, blk, scale, tile, lse, false);
  const int64_t i0 = blk * BQ, rows = std::min<int64_t>(BQ, g.nq - i0);
  const int64_t pb = g.lo(i0) / L<T>;
  for (int64_t r0 = 0; r0 < rows; r0 += MR) {
    const int gr = (int)std::min<int64_t>(MR, rows - r0);
    const int64_t lo = g.lo(i0 + r0), hi = g.hi(i0 + r0 + gr);
    T* o = out + (i0 + r0) * g.d;
    if (lo >= hi) {
      fill(o, gr * g.d, T(0));
      continue;
    }
    times_rows<T>(g, gr, hi - lo, tile + r0 * g.wmax + (lo - pb * L<T>), g.wmax, 1, v + lo * g.d, o,
                  T(1), false);
  }
}

// Rows of dK and dV are zeroed just before their first sum lands (cache-hot, in the thread that
// owns them, instead of a zeros_like pass): rows [fresh, written) are the ones not touched yet.
struct Fresh {
  int64_t from, until;  // rows >= until were written by a segment that ran before
};

template <typename T>
void backward_block(const Geometry& g, const T* q, const T* k, const T* kp, const T* vp,
                    const T* out, const T* dout, const T* lse, const T* extra,
                    const lane_t<T>* keys, int64_t blk, T scale, T* p, bool recompute, T* ds,
                    T* dq, T* dk, T* dv, Fresh& fresh) {
  if (recompute) block_weights<T>(g, q, kp, keys, blk, scale, p, const_cast<T*>(lse), true);
  const int64_t i0 = blk * BQ, rows = std::min<int64_t>(BQ, g.nq - i0);
  const int64_t pb = g.lo(i0) / L<T>;
  T delta[BQ];  // δ_i = dO_i · O_i (+ the statistic's own gradient term, when given)
  for (int64_t r = 0; r < rows; ++r) {
    const T *o = out + (i0 + r) * g.d, *od = dout + (i0 + r) * g.d;
    vec<T> acc = vec<T>{};
    for (int64_t c = 0; c < g.d; c += L<T>) acc += load(o + c) * load(od + c);
    T sum = extra ? extra[i0 + r] : T(0);
    for (int i = 0; i < L<T>; ++i) sum += acc[i];
    delta[r] = sum;
  }
  for (int64_t r0 = 0; r0 < rows; r0 += MR) {
    const int gr = (int)std::min<int64_t>(MR, rows - r0);
    const int64_t lo = g.lo(i0 + r0), hi = g.hi(i0 + r0 + gr);
    if (lo >= hi) {
      fill(ds + r0 * g.wmax, gr * g.wmax, T(0));
      fill(dq + (i0 + r0) * g.d, gr * g.d, T(0));
      continue;
    }
    const int64_t plo = lo / L<T>, phi = (hi + L<T> - 1) / L<T>;
    dots<T>(g, dout + (i0 + r0) * g.d, vp, plo, phi, pb, gr, ds + r0 * g.wmax);
    const int64_t cl = (plo - pb) * L<T>, ch = (phi - pb) * L<T>;
    for (int r = 0; r < gr; ++r) {  // dS = P ∘ (dP - δ); P is 0 wherever the row has no key
      T* drow = ds + (r0 + r) * g.wmax;
      const T* prow = p + (r0 + r) * g.wmax;
      const T dl = delta[r0 + r];
      fill(drow, cl, T(0));
      fill(drow + ch, g.wmax - ch, T(0));
      for (int64_t c = cl; c < ch; c += L<T>)
        store(drow + c, load(prow + c) * (load(drow + c) - dl));
    }
    times_rows<T>(g, gr, hi - lo, ds + r0 * g.wmax + (lo - pb * L<T>), g.wmax, 1, k + lo * g.d,
                  dq + (i0 + r0) * g.d, scale, false);
  }
  // dK, dV of the block's keys, MR keys at a time, summed over the queries that see them
  const int64_t lo = g.lo(i0), hi = g.hi(i0 + rows);
  for (int64_t m0 = lo; m0 < hi; m0 += MR) {
    const int gk = (int)std::min<int64_t>(MR, hi - m0);
    const int64_t qlo = std::max<int64_t>(i0, m0 - g.right);
    const int64_t qhi = std::min<int64_t>(i0 + rows, m0 + gk - 1 + g.left + 1);
    if (qlo >= qhi) continue;
    const int64_t z0 = std::max(m0, fresh.from), z1 = std::min(m0 + gk, fresh.until);
    if (z0 < z1) {
      fill(dk + z0 * g.d, (z1 - z0) * g.d, T(0));
      fill(dv + z0 * g.d, (z1 - z0) * g.d, T(0));
      fresh.from = z1;
    }
    const int64_t col = m0 - pb * L<T>, row = qlo - i0;
    times_rows<T>(g, gk, qhi - qlo, p + row * g.wmax + col, 1, g.wmax, dout + qlo * g.d,
                  dv + m0 * g.d, T(1), true);
    times_rows<T>(g, gk, qhi - qlo, ds + row * g.wmax + col, 1, g.wmax, q + qlo * g.d,
                  dk + m0 * g.d, scale, true);
  }
}

void check(const torch::Tensor& x, const char* name, int64_t heads, int64_t d) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && x.dim() == 3, name,
              ": expected a contiguous CPU tensor (heads, n, d)");
  TORCH_CHECK(x.size(0) == heads && x.size(2) == d, name, ": expected (", heads, ", n, ", d,
              "), got ", x.sizes());
  TORCH_CHECK(d % (64 / (int64_t)x.element_size()) == 0, name, ": d must be a multiple of ",
              64 / x.element_size());
}

// Whether the weights are kept in ``kept`` (a buffer of the block tiles) or recomputed (empty).
bool keeps(const torch::Tensor& kept, const Geometry& g, int64_t heads) {
  const int64_t want = heads * g.blocks * BQ * g.wmax;
  TORCH_CHECK(kept.numel() == 0 || (kept.is_contiguous() && kept.numel() == want),
              "kept: expected none or ", want, " contiguous values, got ", kept.numel());
  return kept.numel() > 0;
}

// The key mask's values (H, panels·PW) in the lane integer type, or nullptr when there is none.
template <typename T>
const lane_t<T>* key_mask(const torch::Tensor& keys, const Geometry& g, int64_t heads) {
  if (keys.numel() == 0) return nullptr;
  TORCH_CHECK(keys.is_contiguous() && keys.numel() == heads * g.panels * L<T> &&
                  keys.element_size() == (int64_t)sizeof(lane_t<T>),
              "keys: expected ", heads * g.panels * L<T>, " contiguous integers of ",
              sizeof(lane_t<T>), " bytes");
  return static_cast<const lane_t<T>*>(keys.data_ptr());
}

torch::Tensor pack_keys(const torch::Tensor& k) {
  const int64_t H = k.size(0), n = k.size(1), d = k.size(2);
  return AT_DISPATCH_FLOATING_TYPES(k.scalar_type(), "pack_keys", [&] {
    const int64_t panels = (n + L<scalar_t> - 1) / L<scalar_t>;
    auto out = torch::empty({H, panels, d, L<scalar_t>}, k.options());
    const scalar_t* src = k.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, H * panels, 64, [&](int64_t b, int64_t e) {
      for (int64_t x = b; x < e; ++x) {
        const int64_t h = x / panels, p = x % panels;
        const int64_t rows = std::min<int64_t>(L<scalar_t>, n - p * L<scalar_t>);
        pack<scalar_t>(src + (h * n + p * L<scalar_t>) * d, dst + (h * panels + p) * d * L<scalar_t>,
                       rows, d, 1);
      }
    });
    return out;
  });
}

}  // namespace

// q (H, nq, d), k, v (H, nk, d); kept: (H, blocks, BQ, wmax) to keep the weights, or empty;
// keys: (H, panels·PW) lane integers, 0 = key masked out for every query, or empty.
std::vector<torch::Tensor> window_forward(torch::Tensor q, torch::Tensor k, torch::Tensor v,
                                          int64_t left, int64_t right, double scale,
                                          torch::Tensor kept, torch::Tensor keys) {
  const int64_t H = q.size(0), d = q.size(2);
  check(q, "q", H, d);
  check(k, "k", H, d);
  check(v, "v", H, d);
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "q, k, v: one dtype expected");
  TORCH_CHECK(k.size(1) == v.size(1), "k, v: same length expected");
  TORCH_CHECK(left >= 0 && right >= 0, "left, right: expected >= 0");
  const int64_t nq = q.size(1), nk = k.size(1);
  auto out = torch::empty_like(q);
  auto lse = torch::empty({H, nq}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "window_forward", [&] {
    using T = scalar_t;
    const Geometry g = geometry<T>(nq, nk, d, left, right);
    const bool keep = keeps(kept, g, H);
    auto kp = pack_keys(k);
    const lane_t<T>* kv = key_mask<T>(keys, g, H);
    const T *qd = q.data_ptr<T>(), *kd = kp.data_ptr<T>(), *vd = v.data_ptr<T>();
    T *od = out.data_ptr<T>(), *ld = lse.data_ptr<T>();
    T* keptd = keep ? kept.data_ptr<T>() : nullptr;
    at::parallel_for(0, H * g.blocks, 1, [&](int64_t b, int64_t e) {
      std::vector<T> scratch(keep ? 0 : BQ * g.wmax);
      for (int64_t x = b; x < e; ++x) {
        const int64_t h = x / g.blocks, blk = x % g.blocks;
        T* tile = keep ? keptd + x * BQ * g.wmax : scratch.data();
        forward_block<T>(g, qd + h * nq * d, kd + h * g.panels * d * L<T>, vd + h * nk * d,
                         kv ? kv + h * g.panels * L<T> : nullptr, blk, (T)scale, tile,
                         od + h * nq * d, ld + h * nq);
      }
    });
  });
  return {out, lse};
}

// Gradients (dq, dk, dv); kept as in window_forward (its weights) or empty (recompute from lse).
// extra: (H, nq) added to δ = rowsum(dO ∘ O) (the log-sum-exp's own gradient), or empty.
std::vector<torch::Tensor> window_backward(torch::Tensor q, torch::Tensor k, torch::Tensor v,
                                           torch::Tensor out, torch::Tensor dout,
                                           torch::Tensor lse, torch::Tensor extra, int64_t left,
                                           int64_t right, double scale, torch::Tensor kept,
                                           torch::Tensor keys) {
  const int64_t H = q.size(0), d = q.size(2);
  check(q, "q", H, d);
  check(k, "k", H, d);
  check(v, "v", H, d);
  check(dout, "dout", H, d);
  check(out, "out", H, d);
  const int64_t nq = q.size(1), nk = k.size(1);
  TORCH_CHECK(lse.is_contiguous() && lse.numel() == H * nq, "lse: expected (H, nq)");
  TORCH_CHECK(extra.numel() == 0 || (extra.is_contiguous() && extra.numel() == H * nq),
              "extra: expected (H, nq) or empty");
  auto dq = torch::empty_like(q);
  auto dk = torch::empty_like(k);
  auto dv = torch::empty_like(v);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "window_backward", [&] {
    using T = scalar_t;
    const Geometry g = geometry<T>(nq, nk, d, left, right);
    const bool keep = keeps(kept, g, H);
    torch::Tensor kp = keep ? torch::Tensor() : pack_keys(k);
    auto vp = pack_keys(v);
    const lane_t<T>* kv = key_mask<T>(keys, g, H);
    const T *qd = q.data_ptr<T>(), *kd = k.data_ptr<T>(), *vpd = vp.data_ptr<T>();
    const T* kpd = keep ? nullptr : kp.data_ptr<T>();
    const T *od = out.data_ptr<T>(), *dod = dout.data_ptr<T>(), *ld = lse.data_ptr<T>();
    const T* ex = extra.numel() ? extra.data_ptr<T>() : nullptr;
    T *dqd = dq.data_ptr<T>(), *dkd = dk.data_ptr<T>(), *dvd = dv.data_ptr<T>();
    T* keptd = keep ? kept.data_ptr<T>() : nullptr;
    // Segments of ``seg`` blocks: the keys of segments s and s + 2 never overlap when a segment
    // spans at least left + right queries. Even segments run in parallel, then odd ones.
    const int64_t threads = at::get_num_threads();
    int64_t seg = g.blocks;
    if (H < 4 * threads) {
      const int64_t least = (left + right + BQ - 1) / BQ + 1;
      const int64_t want = (H * g.blocks + 8 * threads - 1) / (8 * threads);
      seg = std::max<int64_t>(least, std::min<int64_t>(g.blocks, want));
    }
    const int64_t segs = (g.blocks + seg - 1) / seg;
    for (int parity = 0; parity < (segs > 1 ? 2 : 1); ++parity) {
      const int64_t units = H * ((segs - parity + 1) / 2);
      const int64_t per_head = (segs > 1) ? (segs - parity + 1) / 2 : segs;
      at::parallel_for(0, segs > 1 ? units : H * segs, 1, [&](int64_t b, int64_t e) {
        std::vector<T> pbuf(keep ? 0 : BQ * g.wmax), dsbuf(BQ * g.wmax);
        for (int64_t x = b; x < e; ++x) {
          const int64_t h = x / per_head;
          const int64_t s = segs > 1 ? 2 * (x % per_head) + parity : x % per_head;
          const int64_t b0 = s * seg, b1 = std::min(g.blocks, (s + 1) * seg);
          // An odd segment's first keys were summed by segment s - 1, its last by s + 1.
          Fresh fresh{parity ? g.hi(b0 * BQ) : 0, nk};
          if (parity && b1 < g.blocks) fresh.until = std::min(nk, g.lo(b1 * BQ));
          for (int64_t blk = b0; blk < b1; ++blk) {
            T* p = keep ? keptd + (h * g.blocks + blk) * BQ * g.wmax : pbuf.data();
            backward_block<T>(g, qd + h * nq * d, kd + h * nk * d,
                              kpd ? kpd + h * g.panels * d * L<T> : nullptr,
                              vpd + h * g.panels * d * L<T>, od + h * nq * d, dod + h * nq * d,
                              ld + h * nq, ex ? ex + h * nq : nullptr,
                              kv ? kv + h * g.panels * L<T> : nullptr, blk, (T)scale, p, !keep,
                              dsbuf.data(), dqd + h * nq * d, dkd + h * nk * d, dvd + h * nk * d,
                              fresh);
          }
        }
      });
    }
    const int64_t reached = g.hi(nq);  // keys no query sees get no gradient
    for (int64_t h = 0; h < H && reached < nk; ++h) {
      fill(dkd + (h * nk + reached) * d, (nk - reached) * d, T(0));
      fill(dvd + (h * nk + reached) * d, (nk - reached) * d, T(0));
    }
  });
  return {dq, dk, dv};
}

int64_t kept_width(int64_t left, int64_t right, int64_t element_size) {
  const int64_t lanes = 64 / element_size;
  return lanes * ((BQ + left + right + lanes - 1) / lanes + 1);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("window_forward", &window_forward, "fused window attention forward",
        py::call_guard<py::gil_scoped_release>());
  m.def("window_backward", &window_backward, "fused window attention backward",
        py::call_guard<py::gil_scoped_release>());
  m.def("kept_width", &kept_width, "columns of one kept weight row");
  m.attr("BLOCK") = BQ;
}
