// bf16 GEMV / small-M GEMM for decode (AVX512-BF16): y[M, N] = x[M, K] . W[N, K]^T + b, with W the bf16
// row-major weight of an nn.Linear (attention projections, the unembedding).
//
// The x rows are converted once into bf16 rows padded with zeros to a multiple of 32 values; an fp32 x is
// split into hi = bf16(x) and lo = bf16(x - hi), two rows whose results are added (x - hi - lo is below
// 2^-16 |x|). The weight is streamed once per call: one parallel region over output rows (contiguous ranges
// per thread, so each thread reads one contiguous stretch of the matrix). Up to 4 x rows: one weight row at
// a time, 32 K-values per step, two accumulator sets; more x rows: groups of 4 weight rows, every loaded
// weight vector used by up to 4 x rows (16 accumulators), a fifth and later x row re-reading the group from
// L1/L2, not DRAM. While a row (group) is computed, the next one is prefetched into L2.
// A K that is not a multiple of 32 ends with a masked load (the padded x is zero there).
//
// Numerics: bf16 x bf16 products are exact in fp32 and summed in fp32, the bias is added in fp32, and the
// result is rounded once to the output dtype, as torch's bf16 F.linear does; only the order of the fp32
// additions differs. vdpbf16ps treats denormal inputs as zero and flushes denormal results (RNE, no MXCSR).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#define BF_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

namespace oss_common {  // defined in ossagent_kernels.cpp
float read_float(const at::Tensor& t, int64_t i);
float round_bf16(float f);
uint16_t bf16_bits(float f);
}  // namespace oss_common

namespace {

using oss_common::bf16_bits;
using oss_common::read_float;
using oss_common::round_bf16;

constexpr int kRows = 4;    // weight rows per group when more than kTokens x rows share the weight
constexpr int kTokens = 4;  // x rows per pass over a group

BF_TARGET inline __m512bh as_bh(__m512i v) { return reinterpret_cast<__m512bh>(v); }

// One 32-value step at k of R rows x T x rows into acc; meanwhile R cache lines of the next group (`next`,
// the R rows after these, contiguous in memory) are prefetched into L2, so that group streams in while this
// one is computed: the hardware prefetchers alone leave the DRAM stream well below the machine's bandwidth.
template <int R, int T>
BF_TARGET __attribute__((always_inline)) inline void step(__m512 (&acc)[T][R], const uint16_t* w, int64_t K,
                                                          const uint16_t* const* xs, int64_t k, const char* next) {
  __m512i wv[R];
  for (int r = 0; r < R; ++r) wv[r] = _mm512_loadu_si512(w + r * K + k);
  for (int r = 0; r < R; ++r) _mm_prefetch(next + (k / 32 * R + r) * 64, _MM_HINT_T1);
  for (int t = 0; t < T; ++t) {
    const __m512bh xv = as_bh(_mm512_load_si512(xs[t] + k));
    for (int r = 0; r < R; ++r) acc[t][r] = _mm512_dpbf16_ps(acc[t][r], xv, as_bh(wv[r]));
  }
}

// R weight rows (w, row stride K) against T padded bf16 x rows xs[t]: out[t][r] = dot product. U sets of
// accumulators take alternate K steps (one row alone would otherwise wait on a single dependency chain).
template <int R, int T, int U>
BF_TARGET void bf16_rows(const uint16_t* w, int64_t K, const uint16_t* const* xs, float (*out)[kRows]) {
  __m512 acc[U][T][R];
  for (int u = 0; u < U; ++u)
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < R; ++r) acc[u][t][r] = _mm512_setzero_ps();
  const char* next = reinterpret_cast<const char*>(w + R * K);  // prefetching past the end cannot fault
  const int64_t body = K / 32 * 32;
  int64_t k = 0;
  for (; k + 32 * U <= body; k += 32 * U)
    for (int u = 0; u < U; ++u) step<R, T>(acc[u], w, K, xs, k + 32 * u, next);
  for (; k < body; k += 32) step<R, T>(acc[0], w, K, xs, k, next);
  if (body < K) {  // masked tail: the weight is not read past its row, the padded x is zero there
    const __mmask32 mask = static_cast<__mmask32>((uint64_t{1} << (K - body)) - 1);
    __m512i wv[R];
    for (int r = 0; r < R; ++r) wv[r] = _mm512_maskz_loadu_epi16(mask, w + r * K + body);
    for (int t = 0; t < T; ++t) {
      const __m512bh xv = as_bh(_mm512_load_si512(xs[t] + body));
      for (int r = 0; r < R; ++r) acc[0][t][r] = _mm512_dpbf16_ps(acc[0][t][r], xv, as_bh(wv[r]));
    }
  }
  for (int u = 1; u < U; ++u)
    for (int t = 0; t < T; ++t)
      for (int r = 0; r < R; ++r) acc[0][t][r] = _mm512_add_ps(acc[0][t][r], acc[u][t][r]);
  for (int t = 0; t < T; ++t)
    for (int r = 0; r < R; ++r) out[t][r] = _mm512_reduce_add_ps(acc[0][t][r]);
}

// R rows against n x rows, kTokens at a time.
template <int R, int U>
void bf16_tokens(const uint16_t* w, int64_t K, const uint16_t* const* xs, int64_t n, float (*out)[kRows]) {
  for (int64_t t = 0; t < n; t += kTokens) {
    switch (std::min<int64_t>(kTokens, n - t)) {
      case 4: bf16_rows<R, 4, U>(w, K, xs + t, out + t); break;
      case 3: bf16_rows<R, 3, U>(w, K, xs + t, out + t); break;
      case 2: bf16_rows<R, 2, U>(w, K, xs + t, out + t); break;
      default: bf16_rows<R, 1, U>(w, K, xs + t, out + t); break;
    }
  }
}

// x [M, K] (bf16 or fp32) -> padded bf16 rows [rows, Kp], 64-byte aligned; fp32 gives 2M rows (hi, then lo).
struct PaddedRows {
  std::vector<uint16_t> storage;
  uint16_t* base = nullptr;
  int64_t rows = 0, Kp = 0;
  const uint16_t* row(int64_t i) const { return base + i * Kp; }
};

PaddedRows pad_rows(const at::Tensor& x, int64_t M, int64_t K) {
  PaddedRows p;
  const bool split = x.scalar_type() == at::kFloat;
  p.rows = split ? 2 * M : M;
  p.Kp = (K + 31) / 32 * 32;
  p.storage.assign(p.rows * p.Kp + 32, 0);  // + 32: room to align the start to 64 bytes
  const auto addr = reinterpret_cast<uintptr_t>(p.storage.data());
  p.base = p.storage.data() + ((64 - addr % 64) % 64) / 2;
  if (!split) {
    const uint16_t* xp = reinterpret_cast<const uint16_t*>(x.data_ptr());
    for (int64_t m = 0; m < M; ++m) std::memcpy(p.base + m * p.Kp, xp + m * K, K * 2);
    return p;
  }
  const float* xp = x.data_ptr<float>();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) {
      const float v = xp[m * K + k], hi = round_bf16(v);
      p.base[m * p.Kp + k] = bf16_bits(hi);
      p.base[(M + m) * p.Kp + k] = bf16_bits(round_bf16(v - hi));
    }
  return p;
}

// x [M, K] bf16 or fp32, weight [N, K] bf16 contiguous, bias [N] (bf16 or fp32) or None, out_dtype bf16 or
// fp32 -> y [M, N].
at::Tensor bf16_linear(const at::Tensor& x_in, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       at::ScalarType odt) {
  TORCH_CHECK(weight.scalar_type() == at::kBFloat16 && weight.dim() == 2 && weight.is_contiguous() &&
                  weight.device().is_cpu(),
              "bf16_linear: weight must be a contiguous bf16 CPU tensor [N, K]");
  const int64_t N = weight.size(0), K = weight.size(1);
  TORCH_CHECK(x_in.dim() == 2 && x_in.size(1) == K, "bf16_linear: x must be [M, K] with K = ", K);
  TORCH_CHECK(x_in.scalar_type() == at::kBFloat16 || x_in.scalar_type() == at::kFloat,
              "bf16_linear: x must be bf16 or fp32");
  TORCH_CHECK(odt == at::kBFloat16 || odt == at::kFloat, "bf16_linear: the output dtype must be bf16 or fp32");
  at::Tensor b;
  if (bias.has_value()) {
    b = bias->contiguous();
    TORCH_CHECK(b.numel() == N && (b.scalar_type() == at::kFloat || b.scalar_type() == at::kBFloat16),
                "bf16_linear: bias must be bf16 or fp32 with ", N, " values");
  }
  const at::Tensor x = x_in.contiguous();
  const int64_t M = x.size(0);
  at::Tensor y = at::empty({M, N}, x.options().dtype(odt));
  if (M == 0 || N == 0) return y;
  const PaddedRows xr = pad_rows(x, M, K);
  const bool split = xr.rows != M, to_bf16 = odt == at::kBFloat16;
  const uint16_t* wp = reinterpret_cast<const uint16_t*>(weight.data_ptr());
  void* yp = y.data_ptr();
  std::vector<const uint16_t*> xs(xr.rows);
  for (int64_t i = 0; i < xr.rows; ++i) xs[i] = xr.row(i);
  // up to kTokens x rows: one weight row at a time (one sequential stream, two accumulator sets); more: groups
  // of kRows rows, each weight load shared by kTokens x rows (the products, not the loads, bound that case)
  const int64_t per = xr.rows <= kTokens ? 1 : kRows, groups = (N + per - 1) / per;
  at::parallel_for(0, groups, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> d(xr.rows * kRows);
    auto* dd = reinterpret_cast<float(*)[kRows]>(d.data());
    for (int64_t g = begin; g < end; ++g) {
      const int64_t n0 = g * per, rows = std::min<int64_t>(per, N - n0);
      switch (rows) {
        case 4: bf16_tokens<4, 1>(wp + n0 * K, K, xs.data(), xr.rows, dd); break;
        case 3: bf16_tokens<3, 1>(wp + n0 * K, K, xs.data(), xr.rows, dd); break;
        case 2: bf16_tokens<2, 1>(wp + n0 * K, K, xs.data(), xr.rows, dd); break;
        default: bf16_tokens<1, 2>(wp + n0 * K, K, xs.data(), xr.rows, dd); break;
      }
      for (int64_t m = 0; m < M; ++m)
        for (int64_t r = 0; r < rows; ++r) {
          float v = dd[m][r] + (split ? dd[M + m][r] : 0.0f) + (b.defined() ? read_float(b, n0 + r) : 0.0f);
          if (to_bf16)
            static_cast<uint16_t*>(yp)[m * N + n0 + r] = bf16_bits(round_bf16(v));
          else
            static_cast<float*>(yp)[m * N + n0 + r] = v;
        }
    }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ossagent_kernels, m) {
  m.def("bf16_linear(Tensor x, Tensor weight, Tensor? bias, ScalarType out_dtype) -> Tensor", &bf16_linear);
}
