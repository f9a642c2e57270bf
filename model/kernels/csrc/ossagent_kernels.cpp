// Native CPU kernels for ossagent (AVX-512 + AVX512-BF16).
//
//  * mxfp4_gemv   : fused MXFP4 dequantisation + GEMV for decode, one token (or a few) times the experts
//                   it was routed to; optional bias and the gpt-oss clamped SwiGLU as epilogue.
//  * mxfp4_dequant: MXFP4 -> bf16, bit-exact, into a caller-owned buffer (prefill: dequantise an expert
//                   once per chunk, then a bf16 matmul through oneDNN/AMX).
//  * int8_gemv    : int8 weights with one fp32 scale per output row (attention / unembedding option).
//  (q8_kernels.cpp: the int8-activation kernels; bf16_kernels.cpp: the bf16 GEMV of the attention / unembedding
//  rows; moe_bf16_kernels.cpp: a layer's MoE for a few bf16 tokens. kernels_common.h: what they share, among it
//  mxfp4_rows_pairs, the MXFP4 x bf16 row kernel of mxfp4_gemv, mxfp4_moe_decode and mxfp4_moe_bf16.)
//
// MXFP4 layout (OCP microscaling, HF/original gpt-oss checkpoints): a weight [N, K] is stored as
// blocks [N, K/32, 16] uint8 (32 e2m1 values, element 2j in the low nibble of byte j, 2j+1 in the high
// nibble) and scales [N, K/32] uint8 (UE8 exponent, bias 127): w = fp4[nibble] * 2^(scale - 127).
//
// Every kernel splits output rows over at::parallel_for, so the thread count is torch's intra-op count
// (one thread per core is what the package sets). The Python side only calls these when
// `cpu_supported()` says the CPU has AVX-512 F/BW/VL/DQ, AVX512-BF16 and AVX512-VNNI (q8_kernels.cpp).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels_common.h"

// Shared with the other sources (declared in kernels_common.h): rounding as torch does it, and reading a bias value.
namespace oss_common {

float read_float(const at::Tensor& t, int64_t i) {
  if (t.scalar_type() == at::kFloat) return t.data_ptr<float>()[i];
  uint32_t bits = static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(t.data_ptr())[i]) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// fp32 -> nearest bf16 (ties to even), as torch rounds; NaN stays NaN.
float round_bf16(float f) {  // not inline: the other sources link to it (inlined here all the same)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x7FFFFFu)) return f;
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>(u >> 16);
}

// The reference SwiGLU on bf16 tensors, one rounding after every torch op:
// gate = min(g, limit); lin = clamp(l); s = sigmoid(bf16(alpha*gate)); out = bf16(bf16(gate*s) * bf16(lin+1)).
float swiglu_bf16(float gate, float lin, float alpha, float limit) {
  gate = std::min(gate, limit);
  lin = std::max(std::min(lin, limit), -limit);
  const float z = round_bf16(alpha * gate);
  const float sig = round_bf16(1.0f / (1.0f + std::exp(-z)));
  return round_bf16(round_bf16(gate * sig) * round_bf16(lin + 1.0f));
}

}  // namespace oss_common

namespace {

using oss_common::bf16_bits;
using oss_common::read_float;
using oss_common::round_bf16;
using oss_common::swiglu_bf16;

using oss_mx::fp4_lut;
using oss_mx::kFp4Bf16;
using oss_mx::mxfp4_rows_pairs;
using oss_mx::nibble_indices;
using oss_mx::pair_order;

inline float swiglu(float gate, float lin, float alpha, float limit) {
  gate = std::min(gate, limit);
  lin = std::max(std::min(lin, limit), -limit);
  return gate / (1.0f + std::exp(-alpha * gate)) * (lin + 1.0f);
}

void check_mxfp4(const at::Tensor& blocks, const at::Tensor& scales) {
  TORCH_CHECK(blocks.scalar_type() == at::kByte && scales.scalar_type() == at::kByte,
              "mxfp4: blocks and scales must be uint8");
  TORCH_CHECK(blocks.size(-1) == 16, "mxfp4: blocks must end in 16 bytes per 32-value block");
  TORCH_CHECK(blocks.dim() == scales.dim() + 1, "mxfp4: blocks must have one more dim than scales");
  for (int64_t d = 0; d < scales.dim(); ++d)
    TORCH_CHECK(blocks.size(d) == scales.size(d), "mxfp4: blocks.shape[:-1] must equal scales.shape");
  TORCH_CHECK(blocks.is_contiguous() && scales.is_contiguous(), "mxfp4: blocks and scales must be contiguous");
  TORCH_CHECK(blocks.device().is_cpu(), "mxfp4: CPU tensors only");
}

// x [M, K] (bf16 or fp32), blocks [E, N, K/32, 16], scales [E, N, K/32], expert_ids [M] (int64),
// bias [E, N] or None. act = 0: y [M, N]; act = 1: rows (2i, 2i+1) are (gate, linear) and
// y [M, N/2] = clamped SwiGLU(alpha, limit). Output fp32.
at::Tensor mxfp4_gemv(const at::Tensor& x, const at::Tensor& blocks, const at::Tensor& scales,
                      const at::Tensor& expert_ids, const std::optional<at::Tensor>& bias, int64_t act,
                      double alpha, double limit) {
  check_mxfp4(blocks, scales);
  TORCH_CHECK(blocks.dim() == 4, "mxfp4_gemv: blocks must be [E, N, K/32, 16]");
  const int64_t E = blocks.size(0), N = blocks.size(1), G = blocks.size(2), K = G * 32;
  TORCH_CHECK(x.dim() == 2 && x.size(1) == K, "mxfp4_gemv: x must be [M, K] with K = ", K);
  TORCH_CHECK(expert_ids.dim() == 1 && expert_ids.size(0) == x.size(0), "mxfp4_gemv: expert_ids must be [M]");
  TORCH_CHECK(N % 4 == 0, "mxfp4_gemv: N must be a multiple of 4");
  TORCH_CHECK(act == 0 || act == 1, "mxfp4_gemv: act must be 0 (none) or 1 (swiglu)");
  const int64_t M = x.size(0);
  const at::Tensor ids = expert_ids.to(at::kLong).contiguous();
  const int64_t* idp = ids.data_ptr<int64_t>();
  for (int64_t m = 0; m < M; ++m)
    TORCH_CHECK(idp[m] >= 0 && idp[m] < E, "mxfp4_gemv: expert id ", idp[m], " out of range [0, ", E, ")");
  at::Tensor b;
  if (bias.has_value()) {
    b = bias->contiguous();
    TORCH_CHECK(b.dim() == 2 && b.size(0) == E && b.size(1) == N, "mxfp4_gemv: bias must be [E, N]");
    TORCH_CHECK(b.scalar_type() == at::kFloat || b.scalar_type() == at::kBFloat16, "bias: fp32 or bf16");
  }
  const at::Tensor xb = x.to(at::kBFloat16).contiguous();
  std::vector<uint16_t> xorder(M * K);
  for (int64_t m = 0; m < M; ++m)
    pair_order(reinterpret_cast<const uint16_t*>(xb.data_ptr()) + m * K, G, xorder.data() + m * K);
  const uint16_t* xp = xorder.data();
  const uint8_t* bp = blocks.data_ptr<uint8_t>();
  const uint8_t* sp = scales.data_ptr<uint8_t>();
  const int64_t NO = act == 1 ? N / 2 : N;
  at::Tensor y = at::empty({M, NO}, x.options().dtype(at::kFloat));
  float* yp = y.data_ptr<float>();
  const int64_t groups = N / 4;
  const float fa = static_cast<float>(alpha), fl = static_cast<float>(limit);
  at::parallel_for(0, M * groups, 8, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t m = t / groups, n0 = (t % groups) * 4, e = idp[m];
      float d[4];
      const int64_t row = e * N + n0;
      mxfp4_rows_pairs<4>(bp + row * G * 16, sp + row * G, G, xp + m * K, d);
      if (b.defined())
        for (int r = 0; r < 4; ++r) d[r] += read_float(b, row + r);
      if (act == 1) {
        yp[m * NO + n0 / 2] = swiglu(d[0], d[1], fa, fl);
        yp[m * NO + n0 / 2 + 1] = swiglu(d[2], d[3], fa, fl);
      } else {
        for (int r = 0; r < 4; ++r) yp[m * NO + n0 + r] = d[r];
      }
    }
  });
  return y;
}

// Scalar bf16 bits of fp4 code c times 2^(s-127); exact for every s (a 1-bit mantissa never rounds,
// and bf16 has fp32's exponent range, denormals included).
inline uint16_t dequant_scalar(int code, int s) {
  const uint32_t lut_bits = static_cast<uint32_t>(kFp4Bf16[code]) << 16;
  float v;
  std::memcpy(&v, &lut_bits, 4);
  v = std::ldexp(v, s - 127);
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  return static_cast<uint16_t>(bits >> 16);
}

OSS_TARGET void dequant_range(const uint8_t* bp, const uint8_t* sp, uint16_t* op, int64_t begin, int64_t end) {
  const __m512i lut = fp4_lut();
  const __m512i seven = _mm512_set1_epi16(7);
  for (int64_t i = begin; i < end; ++i) {
    const int s = sp[i];
    if (s >= 2 && s <= 252) {
      // Every nonzero code stays a normal bf16: add (s - 127) to the exponent field.
      const __m512i idx = nibble_indices(bp + i * 16);
      const __m512i w = _mm512_permutexvar_epi16(idx, lut);
      const __mmask32 nonzero = _mm512_test_epi16_mask(idx, seven);
      const __m512i v = _mm512_mask_add_epi16(w, nonzero, w, _mm512_set1_epi16(static_cast<int16_t>((s - 127) << 7)));
      _mm512_storeu_si512(op + i * 32, v);
    } else {
      for (int j = 0; j < 16; ++j) {
        const uint8_t byte = bp[i * 16 + j];
        op[i * 32 + 2 * j] = dequant_scalar(byte & 0xF, s);
        op[i * 32 + 2 * j + 1] = dequant_scalar(byte >> 4, s);
      }
    }
  }
}

// blocks [..., N, G, 16], scales [..., N, G] -> out [..., N, G*32] bf16 (written in place).
void mxfp4_dequant(const at::Tensor& blocks, const at::Tensor& scales, at::Tensor out) {
  check_mxfp4(blocks, scales);
  TORCH_CHECK(out.scalar_type() == at::kBFloat16 && out.is_contiguous(), "mxfp4_dequant: out must be contiguous bf16");
  TORCH_CHECK(out.numel() == blocks.numel() * 2, "mxfp4_dequant: out must hold 32 values per block");
  const int64_t nblocks = scales.numel();
  const uint8_t* bp = blocks.data_ptr<uint8_t>();
  const uint8_t* sp = scales.data_ptr<uint8_t>();
  uint16_t* op = reinterpret_cast<uint16_t*>(out.data_ptr());
  at::parallel_for(0, nblocks, 4096, [&](int64_t begin, int64_t end) { dequant_range(bp, sp, op, begin, end); });
}

// R int8 rows against one fp32 row; K % 16 == 0.
template <int R>
OSS_TARGET inline void int8_rows(const int8_t* w, int64_t K, const float* x, float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    const __m512 xv = _mm512_loadu_ps(x + k);
    for (int r = 0; r < R; ++r) {
      if (k % 64 == 0) _mm_prefetch(reinterpret_cast<const char*>(w + R * K + (k / 64 * R + r) * 64), _MM_HINT_T0);
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + r * K + k));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), xv, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = _mm512_reduce_add_ps(acc[r]);
}

// x [M, K] (any float dtype), weight [N, K] int8, scale [N] fp32, bias [N] or None -> y [M, N] fp32,
// y = (x . w_row) * scale_row + bias_row.
at::Tensor int8_gemv(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& scale,
                     const std::optional<at::Tensor>& bias) {
  TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == 2 && weight.is_contiguous(),
              "int8_gemv: weight must be contiguous int8 [N, K]");
  const int64_t N = weight.size(0), K = weight.size(1);
  TORCH_CHECK(K % 16 == 0, "int8_gemv: K must be a multiple of 16");
  TORCH_CHECK(x.dim() == 2 && x.size(1) == K, "int8_gemv: x must be [M, K] with K = ", K);
  TORCH_CHECK(scale.scalar_type() == at::kFloat && scale.numel() == N && scale.is_contiguous(),
              "int8_gemv: scale must be contiguous fp32 [N]");
  at::Tensor b;
  if (bias.has_value()) {
    b = bias->contiguous();
    TORCH_CHECK(b.numel() == N, "int8_gemv: bias must be [N]");
    TORCH_CHECK(b.scalar_type() == at::kFloat || b.scalar_type() == at::kBFloat16, "bias: fp32 or bf16");
  }
  const int64_t M = x.size(0);
  const at::Tensor xf = x.to(at::kFloat).contiguous();
  const float* xp = xf.data_ptr<float>();
  const int8_t* wp = weight.data_ptr<int8_t>();
  const float* scp = scale.data_ptr<float>();
  at::Tensor y = at::empty({M, N}, x.options().dtype(at::kFloat));
  float* yp = y.data_ptr<float>();
  const int64_t groups = (N + 3) / 4;
  at::parallel_for(0, groups, 16, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n0 = t * 4, rows = std::min<int64_t>(4, N - n0);
      for (int64_t m = 0; m < M; ++m) {
        float d[4];
        if (rows == 4) {
          int8_rows<4>(wp + n0 * K, K, xp + m * K, d);
        } else {
          for (int64_t r = 0; r < rows; ++r) int8_rows<1>(wp + (n0 + r) * K, K, xp + m * K, d + r);
        }
        for (int64_t r = 0; r < rows; ++r)
          yp[m * N + n0 + r] = d[r] * scp[n0 + r] + (b.defined() ? read_float(b, n0 + r) : 0.0f);
      }
    }
  });
  return y;
}

// One token through its k experts in one call (decode): x [1, H] bf16, expert ids [k], routing weights [k];
// mlp1 [E, 2I, H/32, 16] (+ scales, bias [E, 2I]), mlp2 [E, H, I/32, 16] (+ scales, bias [E, H]).
// Rounds where the reference rounds (bf16 after each projection and each SwiGLU op, the weighted expert
// outputs, and their sum in ascending expert order), so only the fp32 order inside the dots differs.
at::Tensor mxfp4_moe_decode(const at::Tensor& x, const at::Tensor& blocks1, const at::Tensor& scales1,
                            const at::Tensor& bias1, const at::Tensor& blocks2, const at::Tensor& scales2,
                            const at::Tensor& bias2, const at::Tensor& expert_ids, const at::Tensor& weights,
                            double alpha, double limit) {
  check_mxfp4(blocks1, scales1);
  check_mxfp4(blocks2, scales2);
  TORCH_CHECK(blocks1.dim() == 4 && blocks2.dim() == 4, "mxfp4_moe_decode: blocks must be [E, N, K/32, 16]");
  const int64_t E = blocks1.size(0), N1 = blocks1.size(1), G1 = blocks1.size(2), H = G1 * 32;
  const int64_t NI = N1 / 2, G2 = blocks2.size(2);
  TORCH_CHECK(blocks2.size(0) == E && blocks2.size(1) == H && G2 * 32 == NI,
              "mxfp4_moe_decode: mlp2 must be [E, H, I/32, 16] with I = mlp1 rows / 2");
  TORCH_CHECK(N1 % 8 == 0 && H % 4 == 0, "mxfp4_moe_decode: 2I must be a multiple of 8 and H of 4");
  TORCH_CHECK(x.dim() == 2 && x.size(0) == 1 && x.size(1) == H, "mxfp4_moe_decode: x must be [1, H], H = ", H);
  TORCH_CHECK(x.scalar_type() == at::kBFloat16, "mxfp4_moe_decode: x must be bf16");
  TORCH_CHECK(bias1.dim() == 2 && bias1.size(0) == E && bias1.size(1) == N1 && bias2.dim() == 2 &&
                  bias2.size(0) == E && bias2.size(1) == H,
              "mxfp4_moe_decode: biases must be [E, 2I] and [E, H]");
  const at::Tensor ids = expert_ids.to(at::kLong).contiguous();
  const at::Tensor wts = weights.to(at::kFloat).contiguous();
  const int64_t k = ids.numel();
  TORCH_CHECK(wts.numel() == k, "mxfp4_moe_decode: one routing weight per expert id");
  std::vector<std::pair<int64_t, float>> sel(k);
  for (int64_t j = 0; j < k; ++j) {
    sel[j] = {ids.data_ptr<int64_t>()[j], round_bf16(wts.data_ptr<float>()[j])};
    TORCH_CHECK(sel[j].first >= 0 && sel[j].first < E, "mxfp4_moe_decode: expert id ", sel[j].first,
                " out of range [0, ", E, ")");
  }
  std::stable_sort(sel.begin(), sel.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  const at::Tensor b1 = bias1.contiguous(), b2 = bias2.contiguous();
  const at::Tensor xb = x.contiguous();
  std::vector<uint16_t> xp(H), ap(k * NI), act(k * NI);
  pair_order(reinterpret_cast<const uint16_t*>(xb.data_ptr()), G1, xp.data());
  const uint8_t *bp1 = blocks1.data_ptr<uint8_t>(), *sp1 = scales1.data_ptr<uint8_t>();
  const uint8_t *bp2 = blocks2.data_ptr<uint8_t>(), *sp2 = scales2.data_ptr<uint8_t>();
  const float fa = static_cast<float>(alpha), fl = static_cast<float>(limit);
  const int64_t groups1 = N1 / 4;
  at::parallel_for(0, k * groups1, 8, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t j = t / groups1, n0 = (t % groups1) * 4, row = sel[j].first * N1 + n0;
      float d[4];
      mxfp4_rows_pairs<4>(bp1 + row * G1 * 16, sp1 + row * G1, G1, xp.data(), d);
      for (int r = 0; r < 4; ++r) d[r] = round_bf16(d[r] + read_float(b1, row + r));
      act[j * NI + n0 / 2] = bf16_bits(swiglu_bf16(d[0], d[1], fa, fl));
      act[j * NI + n0 / 2 + 1] = bf16_bits(swiglu_bf16(d[2], d[3], fa, fl));
    }
  });
  for (int64_t j = 0; j < k; ++j) pair_order(act.data() + j * NI, G2, ap.data() + j * NI);
  std::vector<float> y(k * H);
  const int64_t groups2 = H / 4;
  at::parallel_for(0, k * groups2, 8, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t j = t / groups2, n0 = (t % groups2) * 4, row = sel[j].first * H + n0;
      float d[4];
      mxfp4_rows_pairs<4>(bp2 + row * G2 * 16, sp2 + row * G2, G2, ap.data() + j * NI, d);
      for (int r = 0; r < 4; ++r) y[j * H + n0 + r] = round_bf16(round_bf16(d[r] + read_float(b2, row + r)) * sel[j].second);
    }
  });
  at::Tensor out = at::empty({1, H}, x.options());
  uint16_t* op = reinterpret_cast<uint16_t*>(out.data_ptr());
  for (int64_t n = 0; n < H; ++n) {
    float acc = y[n];
    for (int64_t j = 1; j < k; ++j) acc = round_bf16(acc + y[j * H + n]);
    op[n] = bf16_bits(acc);
  }
  return out;
}

bool cpu_supported() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vnni");
}

}  // namespace

TORCH_LIBRARY(ossagent_kernels, m) {
  m.def("cpu_supported() -> bool", &cpu_supported);
  m.def("mxfp4_gemv(Tensor x, Tensor blocks, Tensor scales, Tensor expert_ids, Tensor? bias, int act, float alpha, float limit) -> Tensor",
        &mxfp4_gemv);
  m.def("mxfp4_dequant(Tensor blocks, Tensor scales, Tensor(a!) out) -> ()", &mxfp4_dequant);
  m.def("int8_gemv(Tensor x, Tensor weight, Tensor scale, Tensor? bias) -> Tensor", &int8_gemv);
  m.def("mxfp4_moe_decode(Tensor x, Tensor blocks1, Tensor scales1, Tensor bias1, Tensor blocks2, Tensor scales2, "
        "Tensor bias2, Tensor expert_ids, Tensor weights, float alpha, float limit) -> Tensor",
        &mxfp4_moe_decode);
}
