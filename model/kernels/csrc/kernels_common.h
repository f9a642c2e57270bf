// What the kernel sources share: the declarations of the helpers one source defines for the others, and MXFP4
// rows against bf16 activations (AVX-512 + AVX512-BF16) for ossagent_kernels.cpp (mxfp4_gemv, mxfp4_moe_decode,
// mxfp4_dequant) and moe_bf16_kernels.cpp (mxfp4_moe_bf16).
//
// A row's e2m1 nibbles become bf16 through one word permute on a 16-entry table, the dot products run on
// vdpbf16ps (bf16 x bf16 products exact in fp32) two blocks at a time, and each block pair's sum is scaled by
// its e8m0 scales (powers of two) into an fp32 accumulator. The layout is described in ossagent_kernels.cpp.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#define OSS_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

// Defined in ossagent_kernels.cpp (rounding as torch does it, a bias value, the reference SwiGLU) and
// q8_kernels.cpp (the grouping of a layer's (token, expert) pairs by expert).
namespace oss_common {
float read_float(const at::Tensor& t, int64_t i);
float round_bf16(float f);
uint16_t bf16_bits(float f);
float swiglu_bf16(float gate, float lin, float alpha, float limit);

// The (token, slot) pairs of a layer grouped by expert: pairs[start[s] .. start[s+1]) use expert expert[s].
struct Routing {
  std::vector<int64_t> pairs, start, expert;
};
// ids [P] in [0, E) (checked: `what` names the kernel in the error), stable within an expert.
Routing group_pairs(const int64_t* ids, int64_t P, int64_t E, const char* what);

// MXFP4 blocks [E, N, K/32, 16] and scales [E, N, K/32], uint8, contiguous, CPU, N % 4 == 0.
void check_blocks(const at::Tensor& blocks, const at::Tensor& scales, const char* what);
// The bias contiguous (fp32 or bf16, `numel` values), or an undefined tensor for None.
at::Tensor checked_bias(const std::optional<at::Tensor>& bias, int64_t numel, const char* what);

// A layer's MoE call for T tokens, checked: x [T, H] bf16, mlp1 [E, 2I, H/32, 16] (+ scales, bias [E, 2I]),
// mlp2 [E, H, I/32, 16] (+ scales, bias [E, H]), expert_ids and weights [T, k]. Holds the sizes, the contiguous
// biases, the ids as int64, the routing weights rounded to bf16 (as the reference multiplies them) and the
// T * k (token, slot) pairs (pair p = t * k + j) grouped by expert.
struct MoeCall {
  int64_t E = 0, N1 = 0, G1 = 0, H = 0, NI = 0, G2 = 0, T = 0, k = 0, P = 0;
  at::Tensor b1, b2, ids, wts;
  const int64_t* idp = nullptr;
  const float* wp = nullptr;
  Routing rt;
};
MoeCall prepare_moe(const at::Tensor& x, const at::Tensor& blocks1, const at::Tensor& scales1,
                    const at::Tensor& bias1, const at::Tensor& blocks2, const at::Tensor& scales2,
                    const at::Tensor& bias2, const at::Tensor& expert_ids, const at::Tensor& weights,
                    const char* what);

// Token t's pairs t * k .. t * k + k - 1 in ascending expert id (stable): the order the reference sums them in.
inline void token_slots(const MoeCall& c, int64_t t, std::vector<int64_t>& slots) {
  slots.resize(c.k);
  for (int64_t j = 0; j < c.k; ++j) slots[j] = t * c.k + j;
  std::stable_sort(slots.begin(), slots.end(), [&](int64_t a, int64_t b) { return c.idp[a] < c.idp[b]; });
}

// One projection of every (token, expert) pair of a layer, in one parallel region: for segment s and rows
// n0..n0+3 of its expert, rows(row, xs, n, d) fills d[i][0..3] with the dot products of those rows (row = the
// first one's index in [E * N]) and the inputs xs[i] = input(pair) of the segment's n pairs, then emit(pair, n0,
// d[i]) consumes them. Each touched expert's rows are read once.
//
// The work is split by rows, not by experts: part j of P (one per thread) takes the same share of every touched
// expert's row groups, so each part computes as many (row, token) products as any other whatever the number of
// tokens each expert got (split by experts, the part whose experts had more tokens would be the last to finish),
// and each part still streams contiguous rows. A row's result does not depend on the split.
template <typename X, typename Input, typename Rows, typename Emit>
void grouped_projection(const Routing& rt, int64_t N, Input input, Rows rows, Emit emit) {
  const int64_t groups = N / 4, S = static_cast<int64_t>(rt.expert.size());
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(groups, at::get_num_threads()));
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    std::vector<const X*> xs;
    std::vector<float> d;
    for (int64_t part = begin; part < end; ++part) {
      const int64_t g0 = groups * part / parts, g1 = groups * (part + 1) / parts;
      for (int64_t s = 0; s < S; ++s) {
        const int64_t a = rt.start[s], n = rt.start[s + 1] - a;
        xs.resize(n);
        d.resize(n * 4);
        for (int64_t i = 0; i < n; ++i) xs[i] = input(rt.pairs[a + i]);
        auto* dd = reinterpret_cast<float(*)[4]>(d.data());
        for (int64_t g = g0; g < g1; ++g) {
          rows(rt.expert[s] * N + g * 4, xs.data(), n, dd);
          for (int64_t i = 0; i < n; ++i) emit(rt.pairs[a + i], g * 4, dd[i]);
        }
      }
    }
  });
}

}  // namespace oss_common

namespace oss_mx {

// e2m1 code -> bf16 bits: +0, .5, 1, 1.5, 2, 3, 4, 6, then the same values negated (-0.0 included).
constexpr uint16_t kFp4Bf16[16] = {0x0000, 0x3F00, 0x3F80, 0x3FC0, 0x4000, 0x4040, 0x4080, 0x40C0,
                                   0x8000, 0xBF00, 0xBF80, 0xBFC0, 0xC000, 0xC040, 0xC080, 0xC0C0};

// 2^(s - 127) for every scale byte s, as fp32 (s = 0 is the denormal 2^-127). s = 255 (NaN in the OCP
// spec) gives inf, so the GEMV is exact for scales 0..254 only; mxfp4_dequant is exact for all 256.
struct Exp2Table {
  float v[256];
  Exp2Table() {
    for (int s = 0; s < 256; ++s) v[s] = std::ldexp(1.0f, s - 127);
  }
};
inline const float* exp2_table() {
  static const Exp2Table table;
  return table.v;
}

OSS_TARGET inline __m512i fp4_lut() {
  alignas(64) uint16_t lut[32] = {};
  std::memcpy(lut, kFp4Bf16, sizeof(kFp4Bf16));
  return _mm512_load_si512(lut);
}

// 16 packed bytes -> 32 16-bit nibble indices in element order (low nibble first).
OSS_TARGET inline __m512i nibble_indices(const uint8_t* p) {
  const __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  // (d | d << 12) & 0x000F000F: low word = low nibble, high word = high nibble.
  return _mm512_ternarylogic_epi32(d, _mm512_slli_epi32(d, 12), _mm512_set1_epi32(0x000F000F), 0xA8);
}

OSS_TARGET inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// R rows of one expert (blocks [R, G, 16] at blk, scales [R, G] at scl) against T bf16 activation rows xs[t]
// in pair order (see pair_order): out[t][r] = the dot product, in fp32. Two blocks per step; each row's two
// blocks are decoded once for all T rows. For one (row, token) the fp32 operations and their order do not
// depend on T or R, so a token's results are the same bits whichever group it is computed in.
template <int R, int T>
OSS_TARGET inline void mxfp4_rows_pairs(const uint8_t* blk, const uint8_t* scl, int64_t G, const uint16_t* const* xs,
                                        float (*out)[R]) {
  const __m512i lut = fp4_lut();
  const __m512i low4 = _mm512_set1_epi16(0x0F);
  const float* tab = exp2_table();
  __m512 acc[T][R];
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_setzero_ps();
  for (int64_t g = 0; g + 1 < G; g += 2) {
    __m512bh xlo[T], xhi[T];
    for (int t = 0; t < T; ++t) {
      xlo[t] = as_bh(_mm512_loadu_si512(xs[t] + g * 32));
      xhi[t] = as_bh(_mm512_loadu_si512(xs[t] + g * 32 + 32));
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* b = blk + (r * G + g) * 16;
      // software prefetch of the next R rows (the caller's next step), one line per row every 4 blocks: one
      // core's DRAM stream is latency-bound without it (about 2x slower); past the tensor's end it does not fault
      if (g % 4 == 0) _mm_prefetch(reinterpret_cast<const char*>(blk + R * G * 16 + (g / 4 * R + r) * 64), _MM_HINT_T0);
      const __m512i w = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)));
      const __m512i vlo = _mm512_permutexvar_epi16(_mm512_and_si512(w, low4), lut);
      const __m512i vhi = _mm512_permutexvar_epi16(_mm512_srli_epi16(w, 4), lut);
      const uint8_t* sc = scl + r * G + g;
      const __m512 sv = _mm512_insertf32x8(_mm512_set1_ps(tab[sc[0]]), _mm256_set1_ps(tab[sc[1]]), 1);
      for (int t = 0; t < T; ++t) {
        __m512 d = _mm512_dpbf16_ps(_mm512_setzero_ps(), as_bh(vlo), xlo[t]);
        d = _mm512_dpbf16_ps(d, as_bh(vhi), xhi[t]);
        acc[t][r] = _mm512_fmadd_ps(d, sv, acc[t][r]);
      }
    }
  }
  if (G % 2) {  // last block in plain element order
    const int64_t g = G - 1;
    for (int r = 0; r < R; ++r) {
      const __m512i w = _mm512_permutexvar_epi16(nibble_indices(blk + (r * G + g) * 16), lut);
      const __m512 sv = _mm512_set1_ps(tab[scl[r * G + g]]);
      for (int t = 0; t < T; ++t) {
        const __m512 d = _mm512_dpbf16_ps(_mm512_setzero_ps(), as_bh(w), as_bh(_mm512_loadu_si512(xs[t] + g * 32)));
        acc[t][r] = _mm512_fmadd_ps(d, sv, acc[t][r]);
      }
    }
  }
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) out[t][r] = _mm512_reduce_add_ps(acc[t][r]);
}

// One activation row: R rows, out[r] = the dot product.
template <int R>
inline void mxfp4_rows_pairs(const uint8_t* blk, const uint8_t* scl, int64_t G, const uint16_t* xp, float* out) {
  const uint16_t* xs[1] = {xp};
  mxfp4_rows_pairs<R, 1>(blk, scl, G, xs, reinterpret_cast<float(*)[R]>(out));
}

// Reorder one bf16 row of K = 32 G values into the pair order mxfp4_rows_pairs reads: for blocks (2p, 2p+1),
// 32 words of the even elements of both blocks, then 32 words of the odd ones; an odd last block as it is.
inline void pair_order(const uint16_t* x, int64_t G, uint16_t* xp) {
  for (int64_t g = 0; g + 1 < G; g += 2) {
    for (int h = 0; h < 2; ++h)  // block within the pair
      for (int i = 0; i < 16; ++i) {
        xp[g * 32 + h * 16 + i] = x[(g + h) * 32 + 2 * i];
        xp[g * 32 + 32 + h * 16 + i] = x[(g + h) * 32 + 2 * i + 1];
      }
  }
  if (G % 2) std::memcpy(xp + (G - 1) * 32, x + (G - 1) * 32, 64);
}

}  // namespace oss_mx
