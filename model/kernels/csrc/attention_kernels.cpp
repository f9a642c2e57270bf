// decode_attention: one new token's attention for each of several sequences, in one call per layer (batched and
// single-sequence decode steps).
//
// Sequence i has the query q[i] [nh, d] and its own cache layer: keys and values head-major, k/v [nkv, slots, d]
// (the d values of a key contiguous; any head and slot stride), read in place. Its keys are the `count[i]`
// positions first[i] .. first[i] + count[i] - 1, position p in slot p % slots; a ring layer also passes its slot
// positions pos [slots] (int64, -1 = empty), and a key is used only where pos[slot] passes the reference's mask
// (0 <= pos <= the query's position qpos[i], and pos > qpos - window for a sliding layer); a full layer passes
// an empty pos tensor: key j is position first + j, all of them visible.
//
// One task per (sequence, KV head), spread over at::parallel_for in KV-head-major order (a thread's contiguous
// range then holds sequences of every length alike): the qm = nh / nkv query heads of the group share every key
// and value row read. Rounding follows Attention._attend (bf16 matmuls with fp32 sums, fp32
// softmax): each logit is rounded to bf16 and then scaled in fp32, the softmax over [logits, sink] is fp32 with
// the sink in the denominator only, the weights are rounded to bf16, and the weighted sum of the values is an
// fp32 sum rounded once to bf16. Only the order of fp32 additions and exp's last bit (a Cephes polynomial, within
// about 1 ulp) differ from torch's. bf16 x bf16 products are exact in fp32.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels_common.h"

namespace {


constexpr int kMaxChunks = 4;  // d <= 128: 32 bf16 values a chunk
constexpr int kHeadBlock = 4;  // query heads per pass over the values (4 x 2 x chunks accumulators)

// e^x for 16 lanes (Cephes expf: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, within about 1 ulp);
// x below -87.3 (and -inf) gives 0.
OSS_TARGET inline __m512 exp512(__m512 x) {
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3365f), _CMP_GE_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3365f)), _mm512_set1_ps(88.7228f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n));
}

// round_bf16 on 16 lanes (round to nearest even; no NaN reaches here: the inputs are finite sums or -inf).
OSS_TARGET inline __m512 round_bf16_512(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
  return _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}

// r[i] = the sum of a[i]'s 16 lanes, for 16 vectors: halves, quarters, pairs, then one permute back into order.
OSS_TARGET inline __m512 reduce16(__m512 (&a)[16]) {
  __m512 b[8], c[4], d[2];
  for (int i = 0; i < 8; ++i)  // lanes 0-1 + 2-3: a[i] in the low 256 bits, a[i + 8] in the high
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[i], a[i + 8], 0x44), _mm512_shuffle_f32x4(a[i], a[i + 8], 0xEE));
  for (int i = 0; i < 4; ++i)  // 128-bit lanes: a[i], a[i + 8], a[i + 4], a[i + 12]
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[i], b[i + 4], 0x88), _mm512_shuffle_f32x4(b[i], b[i + 4], 0xDD));
  for (int i = 0; i < 2; ++i)  // in each lane: 2 partial sums of c[i]'s vector, then 2 of c[i + 2]'s
    d[i] = _mm512_add_ps(_mm512_shuffle_ps(c[i], c[i + 2], 0x44), _mm512_shuffle_ps(c[i], c[i + 2], 0xEE));
  // element j of 128-bit lane L: the vector base[L] + off[j], base = {0, 8, 4, 12}, off = {0, 2, 1, 3}
  const __m512 e = _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));
  // vector k sits at element 4 L + j with base[L] + off[j] = k
  const __m512i order = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
  return _mm512_permutexvar_ps(order, e);
}

// Where one sequence's keys live; slot[j] = the slot of key j, -1 where the reference's mask hides it.
struct Seq {
  const uint16_t *k = nullptr, *v = nullptr, *q = nullptr;
  int64_t head_k = 0, slot_k = 0, head_v = 0, slot_v = 0, count = 0;
  std::vector<int64_t> slot;
};

// 32 bf16 values at p, the first `n` of them (the rest zero).
OSS_TARGET inline __m512bh load32(const uint16_t* p, int64_t n) {
  const __mmask32 m = n >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((uint64_t{1} << n) - 1);
  return reinterpret_cast<__m512bh>(_mm512_maskz_loadu_epi16(m, p));
}

// logits[m][j] for the qm heads of group g (q: the group's qm heads, [qm, d] bf16): round_bf16(q . k) * scale,
// -inf where masked. 16 keys at a time: 16 dot products (AVX512-BF16, exact products, fp32 sums) per head,
// reduced together.
template <int C2>
OSS_TARGET void group_logits(const Seq& s, int64_t g, int64_t qm, int64_t d, const uint16_t* q, float scale,
                             float* logits) {
  const uint16_t* kh = s.k + g * s.head_k;
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t j0 = 0; j0 < s.count; j0 += 16) {
    const int64_t nb = std::min<int64_t>(16, s.count - j0);
    const uint16_t* rows[16];
    __mmask16 hidden = 0;
    for (int64_t b = 0; b < 16; ++b) {
      const int64_t sl = b < nb ? s.slot[j0 + b] : -1;
      if (sl < 0) hidden |= static_cast<__mmask16>(1u << b);
      rows[b] = kh + std::max<int64_t>(sl, 0) * s.slot_k;  // a hidden key reads slot 0, then gets -inf
    }
    for (int64_t m = 0; m < qm; ++m) {  // the 16 key rows stay in L1 for the group's heads
      __m512bh qc[C2];
      for (int c = 0; c < C2; ++c) qc[c] = load32(q + m * d + c * 32, d - c * 32);
      __m512 acc[16];
      for (int b = 0; b < 16; ++b) {
        acc[b] = _mm512_dpbf16_ps(_mm512_setzero_ps(), load32(rows[b], d), qc[0]);
        for (int c = 1; c < C2; ++c) acc[b] = _mm512_dpbf16_ps(acc[b], load32(rows[b] + c * 32, d - c * 32), qc[c]);
      }
      __m512 r = _mm512_mul_ps(round_bf16_512(reduce16(acc)), _mm512_set1_ps(scale));
      r = _mm512_mask_mov_ps(r, hidden, ninf);
      _mm512_mask_storeu_ps(logits + m * s.count + j0, static_cast<__mmask16>((1u << nb) - 1), r);
    }
  }
}

// One row of logits [n] (overwritten) -> the softmax weights over [logits, sink] as bf16 bits in wb [n, rounded up
// to even: the pad is 0].
OSS_TARGET void softmax_with_sink(float* row, int64_t n, float sink, uint16_t* wb) {
  __m512 mx = _mm512_set1_ps(sink);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - j)) - 1);
    mx = _mm512_mask_max_ps(mx, m, mx, _mm512_maskz_loadu_ps(m, row + j));
  }
  const float top = _mm512_reduce_max_ps(mx);
  const __m512 vt = _mm512_set1_ps(top);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + j), vt)));
    _mm512_mask_storeu_ps(row + j, m, e);
    sum = _mm512_add_ps(sum, e);
  }
  const float total = _mm512_reduce_add_ps(sum) + _mm512_cvtss_f32(exp512(_mm512_set1_ps(sink - top)));
  const __m512 vtot = _mm512_set1_ps(total);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = n - j >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 w = round_bf16_512(_mm512_div_ps(_mm512_maskz_loadu_ps(m, row + j), vtot));
    _mm256_mask_storeu_epi16(wb + j, m, _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(w), 16)));
  }
  if (n % 2) wb[n] = 0;
}

// out[m] (bf16, d values) = sum_j w[m][j] v_j for heads m0 .. m0 + H - 1 of group g (wb: the bf16 weights, rows of
// `stride` >= count rounded up to even). Two keys a step: their value rows interleaved word by word (unpacklo/hi
// within 128-bit lanes) against the pair of their weights, so one AVX512-BF16 dot product adds both exact
// products. Lane i of a `lo` accumulator (128-bit lane L = i / 4, e = i % 4) holds dim 8 L + e of its 32, of a `hi`
// one dim 8 L + 4 + e. A hidden key has weight 0 and reads slot 0's finite values (as does the pad).
template <int C2, int H>
OSS_TARGET void weighted_values(const Seq& s, int64_t g, int64_t d, const uint16_t* wb, int64_t stride, int64_t m0,
                                uint16_t* out) {
  __m512 acc[H * C2 * 2];  // [h][c][lo, hi], flat: kept in registers
#pragma GCC unroll 32
  for (int i = 0; i < H * C2 * 2; ++i) acc[i] = _mm512_setzero_ps();
  const uint16_t* vh = s.v + g * s.head_v;
  for (int64_t j = 0; j < s.count; j += 2) {
    const uint16_t* va = vh + std::max<int64_t>(s.slot[j], 0) * s.slot_v;
    const uint16_t* vb = j + 1 < s.count ? vh + std::max<int64_t>(s.slot[j + 1], 0) * s.slot_v : va;
    __m512bh lo[C2], hi[C2];
#pragma GCC unroll 4
    for (int c = 0; c < C2; ++c) {
      const int64_t n = d - c * 32;
      const __mmask32 m = n >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((uint64_t{1} << n) - 1);
      const __m512i x = _mm512_maskz_loadu_epi16(m, va + c * 32), y = _mm512_maskz_loadu_epi16(m, vb + c * 32);
      lo[c] = reinterpret_cast<__m512bh>(_mm512_unpacklo_epi16(x, y));
      hi[c] = reinterpret_cast<__m512bh>(_mm512_unpackhi_epi16(x, y));
    }
#pragma GCC unroll 8
    for (int h = 0; h < H; ++h) {
      int32_t pair;  // weights j (low half) and j + 1
      std::memcpy(&pair, wb + (m0 + h) * stride + j, 4);
      const __m512bh wp = reinterpret_cast<__m512bh>(_mm512_set1_epi32(pair));
#pragma GCC unroll 4
      for (int c = 0; c < C2; ++c) {
        acc[(h * C2 + c) * 2] = _mm512_dpbf16_ps(acc[(h * C2 + c) * 2], lo[c], wp);
        acc[(h * C2 + c) * 2 + 1] = _mm512_dpbf16_ps(acc[(h * C2 + c) * 2 + 1], hi[c], wp);
      }
    }
  }
  const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
#pragma GCC unroll 8
  for (int h = 0; h < H; ++h)
#pragma GCC unroll 4
    for (int c = 0; c < C2; ++c)
#pragma GCC unroll 2
      for (int half = 0; half < 2; ++half) {  // dims 32 c + 16 half .. + 15, in order
        const int64_t n = d - c * 32 - half * 16;
        if (n <= 0) continue;
        const __m512 v = _mm512_permutex2var_ps(acc[(h * C2 + c) * 2], half ? second : first, acc[(h * C2 + c) * 2 + 1]);
        const __m512i bits = _mm512_srli_epi32(_mm512_castps_si512(round_bf16_512(v)), 16);
        const __mmask16 m = n >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1);
        _mm256_mask_storeu_epi16(out + (m0 + h) * d + c * 32 + half * 16, m, _mm512_cvtepi32_epi16(bits));
      }
}

// The whole task (sequence s, KV head g): out [qm, d] bf16 at `out`; buf holds the logits, then the weights.
template <int C2>
void group_task(const Seq& s, int64_t g, int64_t qm, int64_t d, const float* sinks, float scale, uint16_t* out,
                std::vector<float>& buf, std::vector<uint16_t>& wb) {
  const int64_t stride = (s.count + 1) / 2 * 2;
  buf.resize(std::max<int64_t>(1, qm * s.count));
  wb.resize(std::max<int64_t>(1, qm * stride));
  group_logits<C2>(s, g, qm, d, s.q + g * qm * d, scale, buf.data());  // heads g*qm .. g*qm+qm-1
  for (int64_t m = 0; m < qm; ++m)
    softmax_with_sink(buf.data() + m * s.count, s.count, sinks[g * qm + m], wb.data() + m * stride);
  int64_t m = 0;
  for (; m + kHeadBlock <= qm; m += kHeadBlock) weighted_values<C2, kHeadBlock>(s, g, d, wb.data(), stride, m, out);
  for (; m < qm; ++m) weighted_values<C2, 1>(s, g, d, wb.data(), stride, m, out);
}

using TaskFn = void (*)(const Seq&, int64_t, int64_t, int64_t, const float*, float, uint16_t*, std::vector<float>&,
                        std::vector<uint16_t>&);

TaskFn task_for(int64_t chunks) {  // 32 dims a chunk
  switch (chunks) {
    case 1: return group_task<1>;
    case 2: return group_task<2>;
    case 3: return group_task<3>;
    default: return group_task<4>;
  }
}

Seq make_seq(const at::Tensor& k, const at::Tensor& v, const at::Tensor& pos, const uint16_t* q, int64_t first,
             int64_t count, int64_t qpos, int64_t window, int64_t nkv, int64_t d) {
  TORCH_CHECK(k.scalar_type() == at::kBFloat16 && v.scalar_type() == at::kBFloat16 && k.dim() == 3 &&
                  v.sizes() == k.sizes() && k.size(0) == nkv && k.size(2) == d && k.stride(2) == 1 &&
                  v.stride(2) == 1 && k.device().is_cpu() && v.device().is_cpu(),
              "decode_attention: k and v must be bf16 CPU tensors [nkv, slots, d] with contiguous rows");
  Seq s;
  s.k = reinterpret_cast<const uint16_t*>(k.data_ptr());
  s.v = reinterpret_cast<const uint16_t*>(v.data_ptr());
  s.q = q;
  s.head_k = k.stride(0), s.slot_k = k.stride(1), s.head_v = v.stride(0), s.slot_v = v.stride(1);
  s.count = count;
  const int64_t slots = k.size(1);
  TORCH_CHECK(count >= 0 && first >= 0, "decode_attention: negative key range");
  s.slot.resize(count);
  if (pos.numel() == 0) {  // a full layer: key j is position first + j, in its own slot
    TORCH_CHECK(first + count <= slots, "decode_attention: keys past the layer's capacity");
    for (int64_t j = 0; j < count; ++j) s.slot[j] = first + j;
    return s;
  }
  TORCH_CHECK(pos.scalar_type() == at::kLong && pos.is_contiguous() && pos.numel() == slots,
              "decode_attention: pos must be int64 [slots], contiguous");
  TORCH_CHECK(count <= slots, "decode_attention: more keys than the ring has slots");
  const int64_t* pp = pos.data_ptr<int64_t>();
  for (int64_t j = 0; j < count; ++j) {  // the reference's mask on the position the slot holds
    const int64_t sl = (first + j) % slots, kp = pp[sl];
    s.slot[j] = kp >= 0 && kp <= qpos && (window == 0 || kp > qpos - window) ? sl : -1;
  }
  return s;
}

// q [N, nh, d] bf16; k[i], v[i], pos[i] per sequence as described above; first, count, qpos [N]; sinks [nh]
// (fp32 or bf16) -> [N, nh * d] bf16.
at::Tensor decode_attention(const at::Tensor& q_in, at::TensorList k, at::TensorList v, at::TensorList pos,
                            at::IntArrayRef first, at::IntArrayRef count, at::IntArrayRef qpos,
                            const at::Tensor& sinks_in, double scale, int64_t window) {
  TORCH_CHECK(q_in.dim() == 3 && q_in.scalar_type() == at::kBFloat16 && q_in.device().is_cpu(),
              "decode_attention: q must be a bf16 CPU tensor [N, nh, d]");
  const at::Tensor q = q_in.contiguous();
  const int64_t N = q.size(0), nh = q.size(1), d = q.size(2);
  TORCH_CHECK(static_cast<int64_t>(k.size()) == N && static_cast<int64_t>(v.size()) == N &&
                  static_cast<int64_t>(pos.size()) == N && static_cast<int64_t>(first.size()) == N &&
                  static_cast<int64_t>(count.size()) == N && static_cast<int64_t>(qpos.size()) == N,
              "decode_attention: one k, v, pos, first, count and qpos per query row");
  TORCH_CHECK(d >= 1 && d <= kMaxChunks * 32, "decode_attention: head_dim must be 1..", kMaxChunks * 32);
  TORCH_CHECK(sinks_in.numel() == nh, "decode_attention: one sink per query head");
  const at::Tensor sinks = sinks_in.to(at::kFloat).contiguous();
  at::Tensor out = at::empty({N, nh * d}, q.options());
  if (N == 0) return out;
  const int64_t nkv = k[0].size(0);
  TORCH_CHECK(nkv >= 1 && nh % nkv == 0, "decode_attention: nh must be a multiple of the KV heads");
  const int64_t qm = nh / nkv;
  const uint16_t* qp = reinterpret_cast<const uint16_t*>(q.data_ptr());
  std::vector<Seq> seqs(N);
  for (int64_t i = 0; i < N; ++i)
    seqs[i] = make_seq(k[i], v[i], pos[i], qp + i * nh * d, first[i], count[i], qpos[i], window, nkv, d);
  const TaskFn task = task_for((d + 31) / 32);
  const float* sp = sinks.data_ptr<float>();
  uint16_t* op = reinterpret_cast<uint16_t*>(out.data_ptr());
  const float sc = static_cast<float>(scale);
  at::parallel_for(0, N * nkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buf;
    std::vector<uint16_t> wb;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t % N, g = t / N;  // KV head major: each thread's range holds every sequence alike
      task(seqs[i], g, qm, d, sp, sc, op + (i * nh + g * qm) * d, buf, wb);
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ossagent_kernels, m) {
  m.def("decode_attention(Tensor q, Tensor[] k, Tensor[] v, Tensor[] pos, int[] first, int[] count, int[] qpos, "
        "Tensor sinks, float scale, int window) -> Tensor",
        &decode_attention);
}
