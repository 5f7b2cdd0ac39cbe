// oneDNN's bf16 matmul on given shapes, for comparison in the kernel benchmark (built only when
// Debian's libdnnl-dev is installed; the addon never links oneDNN).
// Usage: onednn_matmul M K N reps [plain]  ->  prints "best_ms" (bf16 src [M,K] x bf16 weights
// [K,N] -> f32). By default the weights are reordered once, outside the timing, into the layout
// oneDNN prefers (as a frozen weight could be); with "plain" they stay [N, K] row-major, the
// layout our matmul takes on every call, and oneDNN copies them into its blocks per call.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"

int main(int argc, char** argv) {
  if (argc < 5) return 2;
  const long M = std::atol(argv[1]), K = std::atol(argv[2]), N = std::atol(argv[3]), reps = std::atol(argv[4]);
  using namespace dnnl;
  engine eng(engine::kind::cpu, 0);
  stream s(eng);
  memory::desc a_md({M, K}, memory::data_type::bf16, memory::format_tag::ab);
  const bool plain = argc > 5 && std::string(argv[5]) == "plain";
  memory::desc b_md({K, N}, memory::data_type::bf16, plain ? memory::format_tag::ba : memory::format_tag::any);
  memory::desc c_md({M, N}, memory::data_type::f32, memory::format_tag::ab);
  matmul::desc desc(a_md, b_md, c_md);  // oneDNN 2.x API (Debian bookworm ships 2.6)
  matmul::primitive_desc pd(desc, eng);
  memory a(a_md, eng), b(pd.weights_desc(), eng), c(c_md, eng);
  // Weights laid out once in oneDNN's preferred format (with "plain": the same layout, a copy).
  memory b_plain({{K, N}, memory::data_type::bf16, memory::format_tag::ba}, eng);
  reorder(b_plain, b).execute(s, b_plain, b);
  matmul mm(pd);
  double best = 1e30;
  for (long r = 0; r < reps + 1; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    mm.execute(s, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    s.wait();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0 && ms < best) best = ms;
  }
  std::printf("%.4f\n", best);
  return 0;
}
