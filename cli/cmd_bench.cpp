// gsoft bench <suite>: side-by-side timings printed as one JSON object per line.
#include <torch/torch.h>

#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "gsoft/gs/functional.h"
#include "gsoft/ortho/block_maps.h"
#include "timing.h"

namespace gsoft::cli {
namespace {

struct BenchGSOptions {
  // rows x n, block size
  std::vector<std::string> shapes{"4096x768:8", "4096x768:32", "4096x1024:32", "1024x4096:64"};
  double min_seconds = 0.3;
};

struct Shape {
  int64_t rows, n, b;
};

Shape parse_shape(const std::string& s) {
  Shape sh{};
  char x = 0, colon = 0;
  std::istringstream is(s);
  if (!(is >> sh.rows >> x >> sh.n >> colon >> sh.b) || x != 'x' || colon != ':' || !is.eof() ||
      sh.rows < 1 || sh.n < 1 || sh.b < 1 || sh.n % sh.b != 0)
    throw std::invalid_argument("--shape '" + s +
                                "': expected ROWSxN:BLOCK with BLOCK dividing N, e.g. 4096x768:8");
  return sh;
}

double gemm_gflops(double min_seconds) {
  auto a = torch::randn({1024, 1024}), b = torch::randn({1024, 1024});
  auto c = torch::empty({1024, 1024});
  const double ms = median_ms([&] { at::mm_out(c, a, b); }, 2, 5, min_seconds);
  return 2.0 * 1024 * 1024 * 1024 / (ms * 1e6);
}

void run_bench_gs(const BenchGSOptions& opt) {
  torch::manual_seed(0);
  torch::NoGradGuard outer_no_grad;
  const double gflops = gemm_gflops(opt.min_seconds);
  for (const auto& spec : opt.shapes) {
    const Shape sh = parse_shape(spec);
    const int64_t k = sh.n / sh.b;
    const auto chain = gs_orthogonal_chain(sh.n, k, Layout::Official);
    auto A_R = 0.1 * torch::randn({k, sh.b, sh.b});
    auto A_L = 0.1 * torch::randn({k, sh.b, sh.b});
    auto R = functional::cayley(A_R), L = functional::cayley(A_L);
    auto x = torch::randn({sh.rows, sh.n});
    auto gy = torch::randn({sh.rows, sh.n});
    auto y = torch::empty_like(x);
    const std::vector<torch::Tensor> blocks{R, L};
    const auto Q = functional::gs_dense(chain, blocks);

    const double min_s = opt.min_seconds;
    const double fused_fwd = median_ms([&] { functional::gs_apply(chain, x, blocks); }, 2, 5, min_s);
    const double ref_fwd =
        median_ms([&] { functional::reference_butterfly_multiply(x, R, L); }, 2, 5, min_s);
    const double copy = median_ms([&] { y.copy_(x); }, 2, 5, min_s);
    const double dense = median_ms([&] { at::mm_out(y, x, Q.t()); }, 2, 5, min_s);
    const double cayley_ms = median_ms(
        [&] {
          functional::cayley(A_R);
          functional::cayley(A_L);
        },
        2, 5, min_s);

    auto fwdbwd = [&](auto&& op) {
      torch::AutoGradMode grad(true);
      auto xg = x.detach().requires_grad_(true);
      auto Rg = R.detach().requires_grad_(true), Lg = L.detach().requires_grad_(true);
      return median_ms([&] { op(xg, Rg, Lg).backward(gy); }, 2, 5, min_s);
    };
    const double fused_fb = fwdbwd([&](auto& xg, auto& Rg, auto& Lg) {
      return functional::gs_apply(chain, xg, {Rg, Lg});
    });
    const double ref_fb = fwdbwd([&](auto& xg, auto& Rg, auto& Lg) {
      return functional::reference_butterfly_multiply(xg, Rg, Lg);
    });
    const double flops = 4.0 * sh.rows * sh.n * sh.b;
    nlohmann::json j{{"rows", sh.rows},
                     {"n", sh.n},
                     {"block_size", sh.b},
                     {"fused_fwd_ms", fused_fwd},
                     {"fused_fwdbwd_ms", fused_fb},
                     {"reference_fwd_ms", ref_fwd},
                     {"reference_fwdbwd_ms", ref_fb},
                     {"copy_ms", copy},
                     {"dense_fwd_ms", dense},
                     {"blocks_cayley_ms", cayley_ms},
                     {"gemm_gflops", gflops},
                     {"fused_fwd_gflops", flops / (fused_fwd * 1e6)},
                     {"threads", at::get_num_threads()}};
    std::cout << j.dump() << std::endl;
  }
}

}  // namespace

void setup_bench(CLI::App& app, Runners& runners) {
  auto* bench = app.add_subcommand("bench", "Benchmarks printed as one JSON object per line");
  bench->require_subcommand(1);

  auto gs = std::make_shared<BenchGSOptions>();
  auto* cmd = bench->add_subcommand(
      "gs",
      "Fused GS multiply vs the authors' bmm algorithm, a plain copy, a dense matmul by Q and the "
      "Cayley block cost, float32, official layout");
  cmd->add_option("--shape", gs->shapes, "ROWSxN:BLOCK, repeatable")->capture_default_str();
  cmd->add_option("--min-seconds", gs->min_seconds, "Minimum timed seconds per measurement")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  runners.push_back({cmd, [gs] { run_bench_gs(*gs); }});
}

}  // namespace gsoft::cli
