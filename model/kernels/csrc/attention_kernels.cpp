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
// One task per (sequence, KV head), spread over at::parallel_for: the qm = nh / nkv query heads of the group
// share every key and value row read. Rounding follows Attention._attend (bf16 matmuls with fp32 sums, fp32
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

using oss_common::bf16_bits;
using oss_common::round_bf16;

constexpr int kMaxChunks = 8;  // d <= 128: 16 fp32 lanes a chunk
constexpr int kHeadBlock = 4;  // query heads per pass over the values (4 x chunks accumulators)

// 16 bf16 values (the first `m` lanes of mask) -> fp32.
OSS_TARGET inline __m512 load_bf16(const uint16_t* p, __mmask16 m) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

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

// Where one sequence's keys live.
struct Seq {
  const uint16_t *k = nullptr, *v = nullptr, *q = nullptr;
  const int64_t* pos = nullptr;  // ring: the slots' positions; null for a full layer
  int64_t head_k = 0, slot_k = 0, head_v = 0, slot_v = 0, slots = 0, first = 0, count = 0, qpos = 0;
};

// Position of key j, or -1 when the reference's mask hides it.
inline int64_t key_position(const Seq& s, int64_t j, int64_t window) {
  const int64_t p = s.first + j;
  if (s.pos == nullptr) return p;
  const int64_t kp = s.pos[p % s.slots];
  const bool ok = kp >= 0 && kp <= s.qpos && (window == 0 || kp > s.qpos - window);
  return ok ? kp : -1;
}

// logits[m][j] for the qm heads of group g: round_bf16(q . k) * scale, -inf where masked.
template <int C>
OSS_TARGET void group_logits(const Seq& s, int64_t g, int64_t qm, int64_t d, const float* qf, float scale,
                             int64_t window, float* logits) {
  const __mmask16 tail = static_cast<__mmask16>(d % 16 ? (1u << (d % 16)) - 1 : 0xFFFF);
  const uint16_t* kh = s.k + g * s.head_k;
  for (int64_t j = 0; j < s.count; ++j) {
    if (key_position(s, j, window) < 0) {
      for (int64_t m = 0; m < qm; ++m) logits[m * s.count + j] = -std::numeric_limits<float>::infinity();
      continue;
    }
    const uint16_t* kr = kh + ((s.first + j) % s.slots) * s.slot_k;
    __m512 kc[C];
    for (int c = 0; c < C; ++c) kc[c] = load_bf16(kr + c * 16, c == C - 1 ? tail : 0xFFFF);
    for (int64_t m = 0; m < qm; ++m) {
      __m512 acc = _mm512_mul_ps(_mm512_loadu_ps(qf + m * C * 16), kc[0]);
      for (int c = 1; c < C; ++c) acc = _mm512_fmadd_ps(_mm512_loadu_ps(qf + (m * C + c) * 16), kc[c], acc);
      logits[m * s.count + j] = round_bf16(_mm512_reduce_add_ps(acc)) * scale;
    }
  }
}

// One row of logits [n] -> bf16-rounded softmax weights over [logits, sink], in place.
OSS_TARGET void softmax_with_sink(float* row, int64_t n, float sink) {
  __m512 mx = _mm512_set1_ps(sink);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(row + j));
  float top = _mm512_reduce_max_ps(mx);
  for (; j < n; ++j) top = std::max(top, row[j]);
  const __m512 vt = _mm512_set1_ps(top);
  __m512 sum = _mm512_setzero_ps();
  for (j = 0; j + 16 <= n; j += 16) {
    const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(row + j), vt));
    _mm512_storeu_ps(row + j, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (j < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - j)) - 1);
    const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + j), vt));
    _mm512_mask_storeu_ps(row + j, m, e);
    sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(m, e));
  }
  float total = _mm512_reduce_add_ps(sum);
  total += _mm512_cvtss_f32(exp512(_mm512_set1_ps(sink - top)));
  for (j = 0; j < n; ++j) row[j] = round_bf16(row[j] / total);
}

// out[m] (bf16, d values) = sum_j w[m][j] v_j for heads m0 .. m0 + H - 1 of group g.
template <int C, int H>
OSS_TARGET void weighted_values(const Seq& s, int64_t g, int64_t d, const float* w, int64_t m0, uint16_t* out,
                                int64_t out_stride) {
  const __mmask16 tail = static_cast<__mmask16>(d % 16 ? (1u << (d % 16)) - 1 : 0xFFFF);
  __m512 acc[H][C];
  for (int h = 0; h < H; ++h)
    for (int c = 0; c < C; ++c) acc[h][c] = _mm512_setzero_ps();
  const uint16_t* vh = s.v + g * s.head_v;
  for (int64_t j = 0; j < s.count; ++j) {
    bool any = false;
    for (int h = 0; h < H; ++h) any |= w[(m0 + h) * s.count + j] != 0.0f;
    if (!any) continue;  // masked keys (and weights that rounded to 0) add nothing
    const uint16_t* vr = vh + ((s.first + j) % s.slots) * s.slot_v;
    __m512 vc[C];
    for (int c = 0; c < C; ++c) vc[c] = load_bf16(vr + c * 16, c == C - 1 ? tail : 0xFFFF);
    for (int h = 0; h < H; ++h) {
      const __m512 wj = _mm512_set1_ps(w[(m0 + h) * s.count + j]);
      for (int c = 0; c < C; ++c) acc[h][c] = _mm512_fmadd_ps(wj, vc[c], acc[h][c]);
    }
  }
  alignas(64) float buf[C * 16];
  for (int h = 0; h < H; ++h) {
    for (int c = 0; c < C; ++c) _mm512_store_ps(buf + c * 16, acc[h][c]);
    for (int64_t e = 0; e < d; ++e) out[(m0 + h) * out_stride + e] = bf16_bits(round_bf16(buf[e]));
  }
}

template <int C>
void weighted_values_all(const Seq& s, int64_t g, int64_t qm, int64_t d, const float* w, uint16_t* out) {
  int64_t m = 0;
  for (; m + kHeadBlock <= qm; m += kHeadBlock) weighted_values<C, kHeadBlock>(s, g, d, w, m, out, d);
  for (; m < qm; ++m) weighted_values<C, 1>(s, g, d, w, m, out, d);
}

// The whole task (sequence s, KV head g): out [qm, d] bf16 at `out`.
template <int C>
void group_task(const Seq& s, int64_t g, int64_t qm, int64_t d, const float* sinks, float scale, int64_t window,
                uint16_t* out, std::vector<float>& qf, std::vector<float>& buf) {
  qf.assign(qm * C * 16, 0.0f);
  const uint16_t* q = s.q + g * qm * d;  // heads g*qm .. g*qm+qm-1, contiguous [qm, d]
  for (int64_t m = 0; m < qm; ++m)
    for (int64_t e = 0; e < d; ++e) {
      const uint32_t bits = static_cast<uint32_t>(q[m * d + e]) << 16;
      std::memcpy(&qf[m * C * 16 + e], &bits, 4);
    }
  buf.resize(std::max<int64_t>(1, qm * s.count));
  group_logits<C>(s, g, qm, d, qf.data(), scale, window, buf.data());
  for (int64_t m = 0; m < qm; ++m) softmax_with_sink(buf.data() + m * s.count, s.count, sinks[g * qm + m]);
  weighted_values_all<C>(s, g, qm, d, buf.data(), out);
}

using TaskFn = void (*)(const Seq&, int64_t, int64_t, int64_t, const float*, float, int64_t, uint16_t*,
                        std::vector<float>&, std::vector<float>&);

TaskFn task_for(int64_t chunks) {
  switch (chunks) {
    case 1: return group_task<1>;
    case 2: return group_task<2>;
    case 3: return group_task<3>;
    case 4: return group_task<4>;
    case 5: return group_task<5>;
    case 6: return group_task<6>;
    case 7: return group_task<7>;
    default: return group_task<8>;
  }
}

Seq make_seq(const at::Tensor& k, const at::Tensor& v, const at::Tensor& pos, const uint16_t* q, int64_t first,
             int64_t count, int64_t qpos, int64_t nkv, int64_t d) {
  TORCH_CHECK(k.scalar_type() == at::kBFloat16 && v.scalar_type() == at::kBFloat16 && k.dim() == 3 &&
                  v.sizes() == k.sizes() && k.size(0) == nkv && k.size(2) == d && k.stride(2) == 1 &&
                  v.stride(2) == 1 && k.device().is_cpu() && v.device().is_cpu(),
              "decode_attention: k and v must be bf16 CPU tensors [nkv, slots, d] with contiguous rows");
  Seq s;
  s.k = reinterpret_cast<const uint16_t*>(k.data_ptr());
  s.v = reinterpret_cast<const uint16_t*>(v.data_ptr());
  s.q = q;
  s.head_k = k.stride(0), s.slot_k = k.stride(1), s.head_v = v.stride(0), s.slot_v = v.stride(1);
  s.slots = k.size(1), s.first = first, s.count = count, s.qpos = qpos;
  TORCH_CHECK(count >= 0 && first >= 0, "decode_attention: negative key range");
  if (pos.numel() > 0) {
    TORCH_CHECK(pos.scalar_type() == at::kLong && pos.is_contiguous() && pos.numel() == s.slots,
                "decode_attention: pos must be int64 [slots], contiguous");
    TORCH_CHECK(count <= s.slots, "decode_attention: more keys than the ring has slots");
    s.pos = pos.data_ptr<int64_t>();
  } else {
    TORCH_CHECK(first + count <= s.slots, "decode_attention: keys past the layer's capacity");
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
  TORCH_CHECK(d >= 1 && d <= kMaxChunks * 16, "decode_attention: head_dim must be 1..", kMaxChunks * 16);
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
    seqs[i] = make_seq(k[i], v[i], pos[i], qp + i * nh * d, first[i], count[i], qpos[i], nkv, d);
  const TaskFn task = task_for((d + 15) / 16);
  const float* sp = sinks.data_ptr<float>();
  uint16_t* op = reinterpret_cast<uint16_t*>(out.data_ptr());
  const float sc = static_cast<float>(scale);
  at::parallel_for(0, N * nkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qf, buf;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t i = t / nkv, g = t % nkv;
      task(seqs[i], g, qm, d, sp, sc, window, op + (i * nh + g * qm) * d, qf, buf);
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
