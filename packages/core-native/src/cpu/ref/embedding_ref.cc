// Embedding lookup with optional learned positions (OPT adds 2 to the position index).
// Forward caches nothing.
#include "../weight_scalar.h"
#include "ref.h"

namespace lora::ops::ref {

void embedding_fwd(const Ctx&, const EmbeddingFwd& p) {
  for (int64_t m = 0; m < p.M; ++m) {
    const int64_t e = static_cast<int64_t>(p.ids[m]) * p.C;
    float* o = p.out + m * p.C;
    for (int64_t c = 0; c < p.C; ++c) o[c] = load_act(p.table, p.table_dtype, e + c);
    if (p.pos_table) {
      const float* q = p.pos_table + (static_cast<int64_t>(p.pos[m]) + p.pos_offset) * p.C;
      for (int64_t c = 0; c < p.C; ++c) o[c] += q[c];
    }
  }
}

// Gradient contract: dtable and dpos_table accumulate (+=).
void embedding_bwd(const Ctx&, const EmbeddingBwd& p) {
  for (int64_t m = 0; m < p.M; ++m) {
    const float* d = p.dout + m * p.C;
    if (p.dtable) {
      float* t = p.dtable + static_cast<int64_t>(p.ids[m]) * p.C;
      for (int64_t c = 0; c < p.C; ++c) t[c] += d[c];
    }
    if (p.dpos_table) {
      float* t = p.dpos_table + (static_cast<int64_t>(p.pos[m]) + p.pos_offset) * p.C;
      for (int64_t c = 0; c < p.C; ++c) t[c] += d[c];
    }
  }
}

}  // namespace lora::ops::ref
