// mxfp4_moe_bf16: a layer's MoE for a few tokens with bf16 activations (batched decode, short chunks), the
// bf16-activation twin of mxfp4_moe_q8 (q8_kernels.cpp) with the arithmetic of mxfp4_moe_decode.
//
// Every (token, expert) pair of the layer is computed in one parallel region per projection (grouped_projection):
// for each touched expert and group of 4 rows, the rows' MXFP4 blocks are decoded to bf16 once and multiplied
// with up to 4 of the tokens routed to that expert per pass (mxfp4_rows_pairs<4, T>: 4 rows x T tokens of
// accumulators, the next 4 rows prefetched meanwhile), so each touched expert's weights are read from memory
// once per call whatever the number of its tokens (a fifth token re-reads the 4 rows from L1).
//
// Rounding: as the reference and mxfp4_moe_decode (bf16 after each projection including its bias, the reference
// SwiGLU in bf16, the routing weight product, the sum over a token's experts in ascending expert id). The dot
// products run the same fp32 operations in the same order as mxfp4_moe_decode's, so a token's result is the
// same bits as that kernel gives for the token alone.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels_common.h"

namespace {

using namespace oss_common;  // NOLINT(build/namespaces): the shared helpers
using oss_mx::mxfp4_rows_pairs;
using oss_mx::pair_order;

// 4 rows (blocks [4, G, 16] at blk, scales [4, G] at scl) against n activation rows in pair order, 4 at a time.
void rows_tokens(const uint8_t* blk, const uint8_t* scl, int64_t G, const uint16_t* const* xs, int64_t n,
                 float (*out)[4]) {
  for (int64_t t = 0; t < n; t += 4) {
    switch (std::min<int64_t>(4, n - t)) {
      case 4: mxfp4_rows_pairs<4, 4>(blk, scl, G, xs + t, out + t); break;
      case 3: mxfp4_rows_pairs<4, 3>(blk, scl, G, xs + t, out + t); break;
      case 2: mxfp4_rows_pairs<4, 2>(blk, scl, G, xs + t, out + t); break;
      default: mxfp4_rows_pairs<4, 1>(blk, scl, G, xs + t, out + t); break;
    }
  }
}

auto bf16_rows(const at::Tensor& blocks, const at::Tensor& scales, int64_t G) {
  const uint8_t* bp = blocks.data_ptr<uint8_t>();
  const uint8_t* sp = scales.data_ptr<uint8_t>();
  return [=](int64_t row, const uint16_t* const* xs, int64_t n, float (*d)[4]) {
    rows_tokens(bp + row * G * 16, sp + row * G, G, xs, n, d);
  };
}

// x [T, H] bf16, the layer's mlp1 [E, 2I, H/32, 16] (+ scales, bias [E, 2I]) and mlp2 [E, H, I/32, 16]
// (+ scales, bias [E, H]), expert_ids [T, k], weights [T, k] -> [T, H] bf16.
at::Tensor mxfp4_moe_bf16(const at::Tensor& x, const at::Tensor& blocks1, const at::Tensor& scales1,
                          const at::Tensor& bias1, const at::Tensor& blocks2, const at::Tensor& scales2,
                          const at::Tensor& bias2, const at::Tensor& expert_ids, const at::Tensor& weights,
                          double alpha, double limit) {
  const MoeCall c = prepare_moe(x, blocks1, scales1, bias1, blocks2, scales2, bias2, expert_ids, weights,
                                "mxfp4_moe_bf16");
  const int64_t H = c.H, NI = c.NI, k = c.k, P = c.P;
  const at::Tensor xb = x.contiguous();
  std::vector<uint16_t> xp(c.T * H), act(P * NI), ap(P * NI);
  for (int64_t t = 0; t < c.T; ++t)
    pair_order(reinterpret_cast<const uint16_t*>(xb.data_ptr()) + t * H, c.G1, xp.data() + t * H);
  const float fa = static_cast<float>(alpha), fl = static_cast<float>(limit);
  grouped_projection<uint16_t>(c.rt, c.N1, [&](int64_t p) { return xp.data() + (p / k) * H; },
                               bf16_rows(blocks1, scales1, c.G1), [&](int64_t p, int64_t n0, const float* d) {
                                 const int64_t row = c.idp[p] * c.N1 + n0;
                                 float h[4];
                                 for (int r = 0; r < 4; ++r) h[r] = round_bf16(d[r] + read_float(c.b1, row + r));
                                 act[p * NI + n0 / 2] = bf16_bits(swiglu_bf16(h[0], h[1], fa, fl));
                                 act[p * NI + n0 / 2 + 1] = bf16_bits(swiglu_bf16(h[2], h[3], fa, fl));
                               });
  for (int64_t p = 0; p < P; ++p) pair_order(act.data() + p * NI, c.G2, ap.data() + p * NI);
  std::vector<float> y(P * H);
  grouped_projection<uint16_t>(c.rt, H, [&](int64_t p) { return ap.data() + p * NI; },
                               bf16_rows(blocks2, scales2, c.G2), [&](int64_t p, int64_t n0, const float* d) {
                                 const int64_t row = c.idp[p] * H + n0;
                                 for (int r = 0; r < 4; ++r)
                                   y[p * H + n0 + r] = round_bf16(round_bf16(d[r] + read_float(c.b2, row + r)) * c.wp[p]);
                               });
  at::Tensor out = at::empty({c.T, H}, x.options());
  uint16_t* op = reinterpret_cast<uint16_t*>(out.data_ptr());
  std::vector<int64_t> slots;
  for (int64_t t = 0; t < c.T; ++t) {
    token_slots(c, t, slots);
    for (int64_t n = 0; n < H; ++n) {
      float acc = y[slots[0] * H + n];
      for (int64_t j = 1; j < k; ++j) acc = round_bf16(acc + y[slots[j] * H + n]);
      op[t * H + n] = bf16_bits(acc);
    }
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(ossagent_kernels, m) {
  m.def("mxfp4_moe_bf16(Tensor x, Tensor blocks1, Tensor scales1, Tensor bias1, Tensor blocks2, Tensor scales2, "
        "Tensor bias2, Tensor expert_ids, Tensor weights, float alpha, float limit) -> Tensor",
        &mxfp4_moe_bf16);
}
