// Google Benchmark: fused GS multiply vs the authors' algorithm (forward and forward+backward).
// Run: build/bench/gs_multiply_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "gsoft/core/runtime.h"
#include "gsoft/gs/functional.h"
#include "gsoft/ortho/block_maps.h"

namespace {

struct Setup {
  gsoft::GSChain chain;
  torch::Tensor x, gy, R, L;
  Setup(int64_t rows, int64_t n, int64_t b) {
    torch::manual_seed(0);
    chain = gsoft::gs_orthogonal_chain(n, n / b, gsoft::Layout::Official);
    R = gsoft::functional::cayley(0.1 * torch::randn({n / b, b, b}));
    L = gsoft::functional::cayley(0.1 * torch::randn({n / b, b, b}));
    x = torch::randn({rows, n});
    gy = torch::randn({rows, n});
  }
};

void BM_fused_fwd(benchmark::State& st) {
  Setup s(st.range(0), st.range(1), st.range(2));
  torch::NoGradGuard g;
  for (auto _ : st) benchmark::DoNotOptimize(gsoft::functional::gs_apply(s.chain, s.x, {s.R, s.L}));
  st.SetItemsProcessed(st.iterations() * st.range(0));
}
void BM_reference_fwd(benchmark::State& st) {
  Setup s(st.range(0), st.range(1), st.range(2));
  torch::NoGradGuard g;
  for (auto _ : st)
    benchmark::DoNotOptimize(gsoft::functional::reference_butterfly_multiply(s.x, s.R, s.L));
  st.SetItemsProcessed(st.iterations() * st.range(0));
}
void BM_fused_fwdbwd(benchmark::State& st) {
  Setup s(st.range(0), st.range(1), st.range(2));
  auto x = s.x.requires_grad_(true);
  auto R = s.R.requires_grad_(true), L = s.L.requires_grad_(true);
  for (auto _ : st) gsoft::functional::gs_apply(s.chain, x, {R, L}).backward(s.gy);
  st.SetItemsProcessed(st.iterations() * st.range(0));
}
void BM_reference_fwdbwd(benchmark::State& st) {
  Setup s(st.range(0), st.range(1), st.range(2));
  auto x = s.x.requires_grad_(true);
  auto R = s.R.requires_grad_(true), L = s.L.requires_grad_(true);
  for (auto _ : st) gsoft::functional::reference_butterfly_multiply(x, R, L).backward(s.gy);
  st.SetItemsProcessed(st.iterations() * st.range(0));
}

#define GS_SHAPES Args({4096, 768, 8})->Args({4096, 768, 32})->Args({4096, 1024, 32})->Args({1024, 4096, 64})->Unit(benchmark::kMillisecond)
BENCHMARK(BM_fused_fwd)->GS_SHAPES;
BENCHMARK(BM_reference_fwd)->GS_SHAPES;
BENCHMARK(BM_fused_fwdbwd)->GS_SHAPES;
BENCHMARK(BM_reference_fwdbwd)->GS_SHAPES;

}  // namespace

int main(int argc, char** argv) {
  // Same default as the gsoft tool: all cores (libgomp may start libtorch with one thread).
  gsoft::set_num_threads(gsoft::runtime_info().hardware_threads);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
