// gsoft demo: a tour of GS orthogonal matrices on the paper's settings, with every claim checked
// numerically as it is printed.
#include <torch/torch.h>

#include <cstdio>
#include <iostream>

#include "commands.h"
#include "gsoft/gs/functional.h"
#include "gsoft/gs/gs_orthogonal.h"
#include "gsoft/gs/projection.h"
#include "timing.h"

namespace gsoft::cli {
namespace {

struct DemoOptions {
  int64_t n = 768;
  int64_t block_size = 8;
  int64_t rows = 4096;
  uint64_t seed = 0;
};

void run_demo(const DemoOptions& opt) {
  torch::manual_seed(opt.seed);
  const int64_t k = opt.n / opt.block_size;
  std::printf("GS orthogonal matrix Q = P_L L P R, n = %lld, block size b = %lld (r = %lld blocks)\n",
              static_cast<long long>(opt.n), static_cast<long long>(opt.block_size),
              static_cast<long long>(k));
  GSOrthogonal q(GSOrthogonalOptions(opt.n).block_size(opt.block_size));
  {
    torch::NoGradGuard g;
    q->L.normal_(0, 0.3);
    q->R.normal_(0, 0.3);
  }
  torch::NoGradGuard no_grad;
  const auto dense = q->matrix();
  const auto eye = torch::eye(opt.n);
  const double ortho = (torch::matmul(dense.t(), dense) - eye).abs().max().item<double>();
  std::printf("  trainable parameters     %lld (2 n b); dense Q would have %lld\n",
              static_cast<long long>(q->chain.num_parameters()),
              static_cast<long long>(opt.n * opt.n));
  std::printf("  orthogonality |Q^T Q - I|_max = %.2e (Cayley blocks, float32)\n", ortho);
  std::printf("  nonzero fraction of Q     %.4f (b/r = %.4f; dense needs b >= r)\n",
              q->chain.density(), std::min(1.0, double(opt.block_size) / double(k)));
  if (opt.block_size >= 2)
    std::printf("  factors for a dense Q     %lld (Theorem 2: 1 + ceil(log_b r)); BOFT needs %lld\n",
                static_cast<long long>(factors_for_dense(opt.block_size, k)),
                static_cast<long long>(factors_for_dense(2, k)));

  auto x = torch::randn({opt.rows, opt.n});
  const auto blocks = q->blocks();
  const auto y = functional::gs_apply(q->chain, x, blocks);
  const auto y_ref = functional::reference_butterfly_multiply(x, blocks[0], blocks[1]);
  const auto y_dense = torch::matmul(x, dense.t());
  std::printf("  fused kernel vs authors' algorithm: max |diff| = %.2e; vs dense Q: %.2e\n",
              (y - y_ref).abs().max().item<double>(), (y - y_dense).abs().max().item<double>());
  const double t_fused = median_ms([&] { functional::gs_apply(q->chain, x, blocks); });
  const double t_ref = median_ms([&] { functional::reference_butterfly_multiply(x, blocks[0], blocks[1]); });
  std::printf("  %lld x %lld batch: fused %.2f ms, authors' algorithm %.2f ms (%.1fx)\n",
              static_cast<long long>(opt.rows), static_cast<long long>(opt.n), t_fused, t_ref,
              t_ref / t_fused);

  // Algorithm 1: a GS matrix is recovered exactly by projection.
  const auto projected = gs_project(q->chain, dense);
  const double rec = (functional::gs_dense(q->chain, projected) - dense).abs().max().item<double>();
  std::printf("  projection (Algorithm 1) of Q onto its own class: max error %.2e\n", rec);
  std::printf("Run 'gsoft bench gs' for the full benchmark.\n");
}

}  // namespace

void setup_demo(CLI::App& app, Runners& runners) {
  auto opt = std::make_shared<DemoOptions>();
  auto* cmd = app.add_subcommand(
      "demo", "Build a GS orthogonal matrix on the paper's GLUE setting and check its properties");
  cmd->add_option("--n", opt->n, "Matrix size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--block-size", opt->block_size, "Block size b (must divide n)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--rows", opt->rows, "Batch rows for the timing")->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", opt->seed, "Random seed")->capture_default_str();
  runners.push_back({cmd, [opt] { run_demo(*opt); }});
}

}  // namespace gsoft::cli
