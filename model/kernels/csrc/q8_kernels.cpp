// Int8-activation kernels for decode (AVX-512 VNNI): the activation row is quantised to int8 per 32-value
// block (q = round(x / d), d = max|x| / 127, as llama.cpp's Q8_0) and multiplied with vpdpbusd.
//
//  * mxfp4_gemv_q8 : MXFP4 expert rows x int8 activations. The e2m1 nibbles become bytes through one byte
//                    shuffle on the table 2 * e2m1 = {0,1,2,3,4,6,8,12, -0,-1,...,-12} (+ 12); the e8m0
//                    scale goes straight into a float's exponent field (s << 23 = 2^(s-127)), halved for
//                    the x2 table. Four rows are decoded per step and shared by up to two tokens.
//  * mxfp4_moe_q8  : a layer's whole MoE for a few tokens: every (token, expert) pair in one parallel region
//                    per projection, each touched expert's rows read once for all the tokens routed to it.
//  * int8_gemv_q8  : int8 weight rows (one fp32 scale per row, quant8.py) x int8 activations.
//
// vpdpbusd multiplies unsigned by signed bytes: the weights are made unsigned by an offset whose contribution
// is known from the activation alone and removed exactly (see Q8Chunk).
//
// Exactness: every block's int32 dot product is exact (|q| <= 127, |w| <= 12 or 127), its float scale product
// is exact (powers of two), and blocks are summed in fp32. So the result is the exact dot product of the
// *quantised* activation with the weights up to fp32 summation error, except for e8m0 scale 0 (2^-127, a
// denormal) which these kernels treat as 0, and scale 255 (NaN in the spec) which gives inf, as in
// ossagent_kernels.cpp. Needs avx512f/bw/vl/dq + avx512vnni (cpu_supported() checks them).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#define Q8_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512bf16,fma")))

#include "kernels_common.h"  // swiglu_bf16 (the reference SwiGLU, bf16 rounding), Routing

namespace oss_common {

Routing group_pairs(const int64_t* ids, int64_t P, int64_t E, const char* what) {
  Routing rt;
  rt.pairs.resize(P);
  std::iota(rt.pairs.begin(), rt.pairs.end(), 0);
  for (int64_t p = 0; p < P; ++p)
    TORCH_CHECK(ids[p] >= 0 && ids[p] < E, what, ": expert id ", ids[p], " out of range [0, ", E, ")");
  std::stable_sort(rt.pairs.begin(), rt.pairs.end(), [&](int64_t a, int64_t b) { return ids[a] < ids[b]; });
  for (int64_t i = 0; i < P; ++i)
    if (i == 0 || ids[rt.pairs[i]] != ids[rt.pairs[i - 1]]) {
      rt.start.push_back(i);
      rt.expert.push_back(ids[rt.pairs[i]]);
    }
  rt.start.push_back(P);
  return rt;
}

at::Tensor checked_bias(const std::optional<at::Tensor>& bias, int64_t numel, const char* what) {
  if (!bias.has_value()) return at::Tensor();
  at::Tensor b = bias->contiguous();
  TORCH_CHECK(b.numel() == numel, what, ": bias has ", b.numel(), " values, expected ", numel);
  TORCH_CHECK(b.scalar_type() == at::kFloat || b.scalar_type() == at::kBFloat16, what, ": bias must be fp32 or bf16");
  return b;
}

void check_blocks(const at::Tensor& blocks, const at::Tensor& scales, const char* what) {
  TORCH_CHECK(blocks.scalar_type() == at::kByte && scales.scalar_type() == at::kByte, what,
              ": blocks and scales must be uint8");
  TORCH_CHECK(blocks.dim() == 4 && blocks.size(3) == 16, what, ": blocks must be [E, N, K/32, 16]");
  TORCH_CHECK(scales.dim() == 3 && scales.size(0) == blocks.size(0) && scales.size(1) == blocks.size(1) &&
                  scales.size(2) == blocks.size(2),
              what, ": scales must be [E, N, K/32]");
  TORCH_CHECK(blocks.is_contiguous() && scales.is_contiguous(), what, ": blocks and scales must be contiguous");
  TORCH_CHECK(blocks.device().is_cpu(), what, ": CPU tensors only");
  TORCH_CHECK(blocks.size(1) % 4 == 0, what, ": the number of rows must be a multiple of 4");
}

MoeCall prepare_moe(const at::Tensor& x, const at::Tensor& blocks1, const at::Tensor& scales1,
                    const at::Tensor& bias1, const at::Tensor& blocks2, const at::Tensor& scales2,
                    const at::Tensor& bias2, const at::Tensor& expert_ids, const at::Tensor& weights,
                    const char* what) {
  const std::string up = std::string(what) + " mlp1", down = std::string(what) + " mlp2";
  check_blocks(blocks1, scales1, up.c_str());
  check_blocks(blocks2, scales2, down.c_str());
  MoeCall c;
  c.E = blocks1.size(0), c.N1 = blocks1.size(1), c.G1 = blocks1.size(2), c.H = c.G1 * 32;
  c.NI = c.N1 / 2, c.G2 = blocks2.size(2);
  TORCH_CHECK(blocks2.size(0) == c.E && blocks2.size(1) == c.H && c.G2 * 32 == c.NI, what,
              ": mlp2 must be [E, H, I/32, 16] with I = mlp1 rows / 2");
  TORCH_CHECK(x.dim() == 2 && x.size(1) == c.H && x.scalar_type() == at::kBFloat16, what,
              ": x must be bf16 [T, H], H = ", c.H);
  c.T = x.size(0);
  TORCH_CHECK(expert_ids.dim() == 2 && expert_ids.size(0) == c.T && weights.sizes() == expert_ids.sizes(), what,
              ": expert_ids and weights must be [T, k]");
  c.k = expert_ids.size(1), c.P = c.T * c.k;
  c.b1 = checked_bias(bias1, c.E * c.N1, up.c_str());
  c.b2 = checked_bias(bias2, c.E * c.H, down.c_str());
  c.ids = expert_ids.to(at::kLong).contiguous();
  c.wts = weights.to(at::kBFloat16).to(at::kFloat).contiguous();  // the reference's bf16 weights
  c.idp = c.ids.data_ptr<int64_t>();
  c.wp = c.wts.data_ptr<float>();
  c.rt = group_pairs(c.idp, c.P, c.E, what);
  return c;
}

}  // namespace oss_common

namespace {

using namespace oss_common;  // NOLINT(build/namespaces): the helpers above

// fp32 -> nearest bf16 (ties to even) -> fp32, 4 or 16 lanes at once (vcvtneps2bf16; as torch rounds, except
// that fp32 denormals become 0).
Q8_TARGET inline __m128 rne4(__m128 v) {
  return _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(reinterpret_cast<__m128i>(_mm_cvtneps_pbh(v))), 16));
}
Q8_TARGET inline __m256i bf16_16(__m512 v) { return reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)); }
Q8_TARGET inline __m512 rne16(__m512 v) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16_16(v)), 16));
}

// A bias vector (fp32 or bf16, contiguous, or none) read 4 values at a time as fp32.
struct Bias4 {
  const float* f = nullptr;
  const uint16_t* h = nullptr;
  explicit Bias4(const at::Tensor& b) {
    if (!b.defined()) return;
    if (b.scalar_type() == at::kFloat)
      f = b.data_ptr<float>();
    else
      h = reinterpret_cast<const uint16_t*>(b.data_ptr());
  }
  float one(int64_t i) const {
    if (f) return f[i];
    const uint32_t bits = h ? static_cast<uint32_t>(h[i]) << 16 : 0u;
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
  }
  Q8_TARGET __m128 at(int64_t i) const {
    if (f) return _mm_loadu_ps(f + i);
    if (!h) return _mm_setzero_ps();
    const __m128i bits = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(h + i));  // 4 bf16
    return _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(bits), 16));
  }
};

// Epilogues of 4 dot products d (called from parallel regions, whose lambdas cannot take the target attribute).
Q8_TARGET void bias_out(const float* d, const Bias4& b, int64_t row, float* out) {
  _mm_storeu_ps(out, _mm_add_ps(_mm_loadu_ps(d), b.at(row)));
}
// y = bf16(bf16(d + b) * w), as the reference rounds the expert output and the routing weight product
Q8_TARGET void down_out(const float* d, const Bias4& b, int64_t row, float w, float* y) {
  const __m128 v = rne4(_mm_add_ps(_mm_loadu_ps(d), b.at(row)));
  _mm_storeu_ps(y, rne4(_mm_mul_ps(v, _mm_set1_ps(w))));
}
// h = bf16(d + b), rows (gate, linear, gate, linear) -> 2 SwiGLU values
Q8_TARGET void up_out(const float* d, const Bias4& b, int64_t row, float alpha, float limit, float* act) {
  float h[4];
  _mm_storeu_ps(h, rne4(_mm_add_ps(_mm_loadu_ps(d), b.at(row))));
  act[0] = swiglu_bf16(h[0], h[1], alpha, limit);
  act[1] = swiglu_bf16(h[2], h[3], alpha, limit);
}

// 128 activation values (4 blocks of 32) quantised to int8 `lo` and `hi` (64 each), the int32 start values of
// vpdpbusd's 16 lanes (`clo`, `chi`: minus the offset times the sum of the lane's activation bytes, see below),
// and the float scale of every lane (`dlo`, `dhi`: block scale times `unit`).
//  MXFP4 order: lo = the even elements of the 4 blocks (16 each), hi = the odd ones; lane 4j..4j+3 is block j
//  for both, so one accumulator takes lo and hi and starts at clo (chi unused).
//  plain order: lo = elements 0..63, hi = 64..127; lanes 0-7 / 8-15 are blocks 0 / 1 (lo) and 2 / 3 (hi).
// vpdpbusd multiplies *unsigned* by signed bytes, so the weight byte is made unsigned by an offset (MXFP4: the
// table holds 2 * e2m1 + 12, 0..24; int8 rows: w + 128, by flipping the top bit) and the lane starts at
// -offset * sum(q) of its activation bytes, which cancels the offset exactly.
struct alignas(64) Q8Chunk {
  int8_t lo[64];
  int8_t hi[64];
  int32_t clo[16];
  int32_t chi[16];
  float dlo[16];
  float dhi[16];
};

constexpr int kMxOffset = 12, kInt8Offset = 128;

// 32 values -> q = round(x * 127 / amax) (ties to even, in [-127, 127]); returns the scale amax / 127.
Q8_TARGET inline __m512i round_clamp(__m512 v, __m512 inv) {
  const __m512i r = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_max_epi32(_mm512_min_epi32(r, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
}

Q8_TARGET float quantize_block(const float* x, int32_t* q) {
  const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
  const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
  const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
  _mm512_storeu_si512(q, round_clamp(a, inv));
  _mm512_storeu_si512(q + 16, round_clamp(b, inv));
  return amax / 127.0f;
}

// x [K] (K = 32 G) -> ceil(G / 4) chunks; blocks past G are zero. `unit` multiplies every scale.
void quantize_row(const float* x, int64_t K, bool mx_order, float unit, Q8Chunk* out) {
  const int64_t G = K / 32, C = (G + 3) / 4;
  std::memset(static_cast<void*>(out), 0, sizeof(Q8Chunk) * C);
  for (int64_t g = 0; g < G; ++g) {
    int32_t qs[32];
    const float d = quantize_block(x + g * 32, qs);
    Q8Chunk& ch = out[g / 4];
    const int j = static_cast<int>(g % 4);
    for (int i = 0; i < 32; ++i) {
      const int q = qs[i];
      const int pos = mx_order ? (i % 2) * 64 + j * 16 + i / 2 : j * 32 + i;  // byte in lo (< 64) or hi
      (pos < 64 ? ch.lo : ch.hi)[pos % 64] = static_cast<int8_t>(q);
      if (mx_order)
        ch.clo[(pos % 64) / 4] -= kMxOffset * q;
      else
        (pos < 64 ? ch.clo : ch.chi)[(pos % 64) / 4] -= kInt8Offset * q;
    }
    if (mx_order) {
      for (int l = 0; l < 4; ++l) ch.dlo[4 * j + l] = ch.dhi[4 * j + l] = d * unit;
    } else {
      float* dl = j < 2 ? ch.dlo : ch.dhi;
      for (int l = 0; l < 8; ++l) dl[(j % 2) * 8 + l] = d * unit;
    }
  }
}

std::vector<Q8Chunk> quantize_rows(const float* x, int64_t M, int64_t K, bool mx_order, float unit) {
  const int64_t C = (K / 32 + 3) / 4;
  std::vector<Q8Chunk> q(M * C);
  for (int64_t m = 0; m < M; ++m) quantize_row(x + m * K, K, mx_order, unit, q.data() + m * C);
  return q;
}

// R MXFP4 rows (blocks [R, G, 16] at blk, scales [R, G] at scl) against T quantised rows xs[t] (MXFP4 order,
// unit 0.5): out[t][r] = dot.
template <int R, int T>
Q8_TARGET void mx_q8_rows(const uint8_t* blk, const uint8_t* scl, int64_t G, const Q8Chunk* const* xs,
                          float (*out)[R]) {
  // 2 * e2m1 + 12 for the 16 codes (+0, .5, 1, 1.5, 2, 3, 4, 6, then negated)
  const __m512i table =
      _mm512_broadcast_i32x4(_mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  // 128-bit lane j: scale byte j into the low byte of each of its 4 dwords, zeros elsewhere
  const __m512i spread = _mm512_set_epi32(0x80808003, 0x80808003, 0x80808003, 0x80808003, 0x80808002, 0x80808002,
                                          0x80808002, 0x80808002, 0x80808001, 0x80808001, 0x80808001, 0x80808001,
                                          0x80808000, 0x80808000, 0x80808000, 0x80808000);
  __m512 acc[T][R];
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
  const int64_t C = (G + 3) / 4;
  for (int64_t c = 0; c < C; ++c) {
    const int64_t g = c * 4, nb = std::min<int64_t>(4, G - g);
    __m512i wl[R], wh[R];
    __m512 sv[R];
    for (int r = 0; r < R; ++r) {  // decode the R rows' 4 blocks once for all T tokens
      const uint8_t* b = blk + (r * G + g) * 16;
      // the next R rows (the caller's next step) stream in at the rate these are read; a prefetch past the
      // tensor's end does not fault
      _mm_prefetch(reinterpret_cast<const char*>(blk + R * G * 16 + (c * R + r) * 64), _MM_HINT_T0);
      const uint8_t* s = scl + r * G + g;
      __m512i w, sb;
      if (nb == 4) {
        w = _mm512_loadu_si512(b);
        int32_t s4;
        std::memcpy(&s4, s, 4);
        sb = _mm512_set1_epi32(s4);
      } else {
        w = _mm512_maskz_loadu_epi8((uint64_t{1} << (nb * 16)) - 1, b);
        sb = _mm512_broadcast_i32x4(_mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << nb) - 1), s));
      }
      wl[r] = _mm512_shuffle_epi8(table, _mm512_and_si512(w, low4));
      wh[r] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(w, 4), low4));
      sv[r] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_shuffle_epi8(sb, spread), 23));
    }
    for (int t = 0; t < T; ++t) {  // each token's chunk is loaded once for the R rows
      const Q8Chunk& x = xs[t][c];
      const __m512i xlo = _mm512_load_si512(x.lo), xhi = _mm512_load_si512(x.hi), x0 = _mm512_load_si512(x.clo);
      const __m512 xd = _mm512_load_ps(x.dlo);
      for (int r = 0; r < R; ++r) {
        const __m512i a = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(x0, wl[r], xlo), wh[r], xhi);
        acc[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a), _mm512_mul_ps(sv[r], xd), acc[t][r]);
      }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) out[t][r] = _mm512_reduce_add_ps(acc[t][r]);
}

// 4 rows x any number of tokens. One token: 4 rows per pass. More: 2 rows x up to 4 tokens per pass, so a
// decoded weight vector serves 4 tokens (registers: 6 decoded + 8 accumulators + 4 activation vectors).
template <int T>
void mx_q8_pairs(const uint8_t* blk, const uint8_t* scl, int64_t G, const Q8Chunk* const* xs, float (*out)[4]) {
  for (int h = 0; h < 2; ++h) {
    float d[T][2];
    mx_q8_rows<2, T>(blk + 2 * h * G * 16, scl + 2 * h * G, G, xs, d);
    for (int t = 0; t < T; ++t) {
      out[t][2 * h] = d[t][0];
      out[t][2 * h + 1] = d[t][1];
    }
  }
}

void mx_q8_tokens(const uint8_t* blk, const uint8_t* scl, int64_t G, const Q8Chunk* const* xs, int64_t n,
                  float (*out)[4]) {
  if (n == 1) return mx_q8_rows<4, 1>(blk, scl, G, xs, out);
  for (int64_t t = 0; t < n; t += 4) {
    switch (std::min<int64_t>(4, n - t)) {
      case 4: mx_q8_pairs<4>(blk, scl, G, xs + t, out + t); break;
      case 3: mx_q8_pairs<3>(blk, scl, G, xs + t, out + t); break;
      case 2: mx_q8_pairs<2>(blk, scl, G, xs + t, out + t); break;
      default: mx_q8_rows<4, 1>(blk, scl, G, xs + t, out + t); break;
    }
  }
}

// R int8 rows [R, K] against T quantised rows (plain order, unit 1): out[t][r] = dot.
template <int R, int T>
Q8_TARGET void i8_q8_rows(const int8_t* w, int64_t K, const Q8Chunk* const* xs, float (*out)[R]) {
  const __m512i top = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc[T][R];
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
  const int64_t C = (K + 127) / 128;
  for (int64_t c = 0; c < C; ++c) {
    const int64_t left = K - c * 128;
    const __mmask64 mlo = left >= 64 ? ~uint64_t{0} : (uint64_t{1} << left) - 1;
    const __mmask64 mhi = left >= 128 ? ~uint64_t{0} : left <= 64 ? 0 : (uint64_t{1} << (left - 64)) - 1;
    for (int r = 0; r < R; ++r) {
      const int8_t* p = w + r * K + c * 128;
      const char* next = reinterpret_cast<const char*>(w + R * K + (c * R + r) * 128);  // the next R rows
      _mm_prefetch(next, _MM_HINT_T0);
      _mm_prefetch(next + 64, _MM_HINT_T0);
      const __m512i wl = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mlo, p), top);  // w + 128 as unsigned
      const __m512i wh = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mhi, p + 64), top);
      for (int t = 0; t < T; ++t) {
        const Q8Chunk& x = xs[t][c];
        const __m512i al = _mm512_dpbusd_epi32(_mm512_load_si512(x.clo), wl, _mm512_load_si512(x.lo));
        const __m512i ah = _mm512_dpbusd_epi32(_mm512_load_si512(x.chi), wh, _mm512_load_si512(x.hi));
        acc[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(al), _mm512_load_ps(x.dlo), acc[t][r]);
        acc[t][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ah), _mm512_load_ps(x.dhi), acc[t][r]);
      }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) out[t][r] = _mm512_reduce_add_ps(acc[t][r]);
}

template <int R>
void i8_q8_tokens(const int8_t* w, int64_t K, const Q8Chunk* const* xs, int64_t n, float (*out)[R]) {
  for (int64_t t = 0; t < n; t += 4) {
    switch (std::min<int64_t>(4, n - t)) {
      case 4: i8_q8_rows<R, 4>(w, K, xs + t, out + t); break;
      case 3: i8_q8_rows<R, 3>(w, K, xs + t, out + t); break;
      case 2: i8_q8_rows<R, 2>(w, K, xs + t, out + t); break;
      default: i8_q8_rows<R, 1>(w, K, xs + t, out + t); break;
    }
  }
}

// x [M, K], blocks [E, N, K/32, 16], scales [E, N, K/32], expert_ids [M], bias [E, N] or None -> y [M, N] fp32.
at::Tensor mxfp4_gemv_q8(const at::Tensor& x, const at::Tensor& blocks, const at::Tensor& scales,
                         const at::Tensor& expert_ids, const std::optional<at::Tensor>& bias) {
  check_blocks(blocks, scales, "mxfp4_gemv_q8");
  const int64_t E = blocks.size(0), N = blocks.size(1), G = blocks.size(2), K = G * 32, M = x.size(0);
  TORCH_CHECK(x.dim() == 2 && x.size(1) == K, "mxfp4_gemv_q8: x must be [M, K] with K = ", K);
  TORCH_CHECK(expert_ids.dim() == 1 && expert_ids.size(0) == M, "mxfp4_gemv_q8: expert_ids must be [M]");
  const at::Tensor ids = expert_ids.to(at::kLong).contiguous();
  const int64_t* idp = ids.data_ptr<int64_t>();
  for (int64_t m = 0; m < M; ++m)
    TORCH_CHECK(idp[m] >= 0 && idp[m] < E, "mxfp4_gemv_q8: expert id ", idp[m], " out of range [0, ", E, ")");
  const at::Tensor b = checked_bias(bias, E * N, "mxfp4_gemv_q8");
  const at::Tensor xf = x.to(at::kFloat).contiguous();
  const std::vector<Q8Chunk> xq = quantize_rows(xf.data_ptr<float>(), M, K, true, 0.5f);
  const int64_t C = (G + 3) / 4, groups = N / 4;
  const uint8_t* bp = blocks.data_ptr<uint8_t>();
  const uint8_t* sp = scales.data_ptr<uint8_t>();
  at::Tensor y = at::empty({M, N}, x.options().dtype(at::kFloat));
  float* yp = y.data_ptr<float>();
  const Bias4 bias4(b);
  at::parallel_for(0, M * groups, 8, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t m = t / groups, row = idp[m] * N + (t % groups) * 4;
      const Q8Chunk* xs[1] = {xq.data() + m * C};
      float d[1][4];
      mx_q8_tokens(bp + row * G * 16, sp + row * G, G, xs, 1, d);
      bias_out(d[0], bias4, row, yp + m * N + (t % groups) * 4);
    }
  });
  return y;
}

// 4 MXFP4 rows (the first at `row` of blocks bp / scales sp with G blocks a row) against n quantised inputs.
auto q8_rows(const uint8_t* bp, const uint8_t* sp, int64_t G) {
  return [=](int64_t row, const Q8Chunk* const* xs, int64_t n, float (*d)[4]) {
    mx_q8_tokens(bp + row * G * 16, sp + row * G, G, xs, n, d);
  };
}

// out [H] bf16 = y[slots[0]] + y[slots[1]] + ..., rounded to bf16 after each addition (H % 4 == 0).
Q8_TARGET void sum_experts(const float* y, const int64_t* slots, int64_t k, int64_t H, uint16_t* out) {
  int64_t n = 0;
  for (; n + 16 <= H; n += 16) {
    __m512 acc = _mm512_loadu_ps(y + slots[0] * H + n);
    for (int64_t j = 1; j < k; ++j) acc = rne16(_mm512_add_ps(acc, _mm512_loadu_ps(y + slots[j] * H + n)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + n), bf16_16(acc));
  }
  for (; n < H; n += 4) {
    __m128 acc = _mm_loadu_ps(y + slots[0] * H + n);
    for (int64_t j = 1; j < k; ++j) acc = rne4(_mm_add_ps(acc, _mm_loadu_ps(y + slots[j] * H + n)));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + n), reinterpret_cast<__m128i>(_mm_cvtneps_pbh(acc)));
  }
}

// A layer's experts for T tokens: x [T, H] bf16, expert_ids [T, k], weights [T, k]; mlp1 [E, 2I, H/32, 16]
// (+ scales, bias [E, 2I]), mlp2 [E, H, I/32, 16] (+ scales, bias [E, H]) -> [T, H] bf16. Rounds where the
// reference rounds (bf16 after each projection and SwiGLU op, the routing weight product, the sum over a
// token's experts in ascending expert order); the activations entering each projection are int8 per block.
at::Tensor mxfp4_moe_q8(const at::Tensor& x, const at::Tensor& blocks1, const at::Tensor& scales1,
                        const at::Tensor& bias1, const at::Tensor& blocks2, const at::Tensor& scales2,
                        const at::Tensor& bias2, const at::Tensor& expert_ids, const at::Tensor& weights,
                        double alpha, double limit) {
  const MoeCall c = prepare_moe(x, blocks1, scales1, bias1, blocks2, scales2, bias2, expert_ids, weights,
                                "mxfp4_moe_q8");
  const int64_t N1 = c.N1, G1 = c.G1, H = c.H, NI = c.NI, G2 = c.G2, T = c.T, k = c.k, P = c.P;
  const int64_t* idp = c.idp;
  const float* wp = c.wp;
  const Routing& rt = c.rt;
  const at::Tensor xf = x.to(at::kFloat).contiguous();
  const std::vector<Q8Chunk> xq1 = quantize_rows(xf.data_ptr<float>(), T, H, true, 0.5f);
  std::vector<float> act(P * NI);
  const float fa = static_cast<float>(alpha), fl = static_cast<float>(limit);
  const Bias4 bias1v(c.b1), bias2v(c.b2);
  const int64_t C1 = (G1 + 3) / 4, C2 = (G2 + 3) / 4;
  grouped_projection<Q8Chunk>(rt, N1, [&](int64_t p) { return xq1.data() + C1 * (p / k); },
                              q8_rows(blocks1.data_ptr<uint8_t>(), scales1.data_ptr<uint8_t>(), G1),
                              [&](int64_t p, int64_t n0, const float* d) {
                                up_out(d, bias1v, idp[p] * N1 + n0, fa, fl, act.data() + p * NI + n0 / 2);
                              });
  const std::vector<Q8Chunk> xq2 = quantize_rows(act.data(), P, NI, true, 0.5f);
  std::vector<float> y(P * H);
  grouped_projection<Q8Chunk>(rt, H, [&](int64_t p) { return xq2.data() + C2 * p; },
                              q8_rows(blocks2.data_ptr<uint8_t>(), scales2.data_ptr<uint8_t>(), G2),
                              [&](int64_t p, int64_t n0, const float* d) {
                                down_out(d, bias2v, idp[p] * H + n0, wp[p], y.data() + p * H + n0);
                              });
  at::Tensor out = at::empty({T, H}, x.options());
  uint16_t* op = reinterpret_cast<uint16_t*>(out.data_ptr());
  std::vector<int64_t> slots;
  for (int64_t t = 0; t < T; ++t) {
    token_slots(c, t, slots);
    sum_experts(y.data(), slots.data(), k, H, op + t * H);
  }
  return out;
}

// The [N, K] weight's rows in groups of 4 (single rows for the last N % 4) over one parallel region, for M
// tokens: four(n0, d) fills d[m][0..3], one(n, d) fills d[m][0], store(m, n, count, values) writes the results.
template <typename Four, typename One, typename Store>
void over_row_groups(int64_t N, int64_t M, Four four, One one, Store store) {
  at::parallel_for(0, (N + 3) / 4, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> d(M * 4), d1(M);
    auto* dd = reinterpret_cast<float(*)[4]>(d.data());
    auto* dd1 = reinterpret_cast<float(*)[1]>(d1.data());
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n0 = t * 4, rows = std::min<int64_t>(4, N - n0);
      if (rows == 4) {
        four(n0, dd);
        for (int64_t m = 0; m < M; ++m) store(m, n0, 4, dd[m]);
      } else {
        for (int64_t r = 0; r < rows; ++r) {
          one(n0 + r, dd1);
          for (int64_t m = 0; m < M; ++m) store(m, n0 + r, 1, dd1[m]);
        }
      }
    }
  });
}

// x [M, K] (K % 32 == 0), weight [N, K] int8 in [-127, 127], scale [N] fp32, bias [N] or None -> y [M, N] fp32,
// y = (q8(x) . w_row) * scale_row + bias_row.
at::Tensor int8_gemv_q8(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scale,
                        const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == 2 && weight.is_contiguous(),
              "int8_gemv_q8: weight must be contiguous int8 [N, K]");
  const int64_t N = weight.size(0), K = weight.size(1), M = x.size(0);
  TORCH_CHECK(K % 32 == 0, "int8_gemv_q8: K must be a multiple of 32");
  TORCH_CHECK(x.dim() == 2 && x.size(1) == K, "int8_gemv_q8: x must be [M, K] with K = ", K);
  TORCH_CHECK(scale.scalar_type() == at::kFloat && scale.numel() == N && scale.is_contiguous(),
              "int8_gemv_q8: scale must be contiguous fp32 [N]");
  const at::Tensor b = checked_bias(bias, N, "int8_gemv_q8");
  const at::Tensor xf = x.to(at::kFloat).contiguous();
  const std::vector<Q8Chunk> xq = quantize_rows(xf.data_ptr<float>(), M, K, false, 1.0f);
  const int64_t C = (K + 127) / 128;
  std::vector<const Q8Chunk*> xs(M);
  for (int64_t m = 0; m < M; ++m) xs[m] = xq.data() + m * C;
  const int8_t* wp = weight.data_ptr<int8_t>();
  const float* scp = scale.data_ptr<float>();
  at::Tensor y = at::empty({M, N}, x.options().dtype(at::kFloat));
  float* yp = y.data_ptr<float>();
  const Bias4 bias4(b);
  over_row_groups(N, M, [&](int64_t n0, float (*d)[4]) { i8_q8_tokens<4>(wp + n0 * K, K, xs.data(), M, d); },
                  [&](int64_t n, float (*d)[1]) { i8_q8_tokens<1>(wp + n * K, K, xs.data(), M, d); },
                  [&](int64_t m, int64_t n, int count, const float* v) {
                    for (int i = 0; i < count; ++i)
                      yp[m * N + n + i] = v[i] * scp[n + i] + bias4.one(n + i);
                  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ossagent_kernels, m) {
  m.def("mxfp4_gemv_q8(Tensor x, Tensor blocks, Tensor scales, Tensor expert_ids, Tensor? bias) -> Tensor",
        &mxfp4_gemv_q8);
  m.def("mxfp4_moe_q8(Tensor x, Tensor blocks1, Tensor scales1, Tensor bias1, Tensor blocks2, Tensor scales2, "
        "Tensor bias2, Tensor expert_ids, Tensor weights, float alpha, float limit) -> Tensor",
        &mxfp4_moe_q8);
  m.def("int8_gemv_q8(Tensor x, Tensor weight, Tensor scale, Tensor? bias) -> Tensor", &int8_gemv_q8);
}
