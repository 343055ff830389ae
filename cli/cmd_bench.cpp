// gsoft bench <suite>: side-by-side timings printed as one JSON object per line.
#include <torch/torch.h>

#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "gsoft/adapters/adaptable_conv2d.h"
#include "gsoft/adapters/adaptable_linear.h"
#include "gsoft/gs/functional.h"
#include "gsoft/gs/chain.h"
#include "gsoft/ortho/block_maps.h"
#include "timing.h"

namespace gsoft::cli {
namespace {

struct BenchGSOptions {
  // rows x n, block size
  std::vector<std::string> shapes{"4096x768:8", "4096x1024:16", "4096x768:32", "4096x1024:32", "1024x4096:64"};
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
    auto fwdbwd_op = [&](auto&& op) {
      // Gradients reset each time, as training's zero_grad(set_to_none) and every activation
      // have them: accumulating into an existing .grad would add a pass over x that is not the op's.
      auto xg = x.detach().requires_grad_(true);
      auto Rg = R.detach().requires_grad_(true), Lg = L.detach().requires_grad_(true);
      return [&op, xg, Rg, Lg, &gy]() mutable {
        torch::AutoGradMode grad(true);
        for (auto* t : {&xg, &Rg, &Lg}) t->mutable_grad().reset();
        op(xg, Rg, Lg).backward(gy);
      };
    };
    auto fused = [&](auto& xg, auto& Rg, auto& Lg) { return functional::gs_apply(chain, xg, {Rg, Lg}); };
    // The row kernels (when this chain has them) and the tile kernels, alternating in rounds so that
    // a change in the machine's load hits both.
    const bool row = functional::row_kernels(chain);
    std::vector<double> fwd_ms, fwd_cpu, fb_ms, fb_cpu, tile_fwd_ms, tile_fwd_cpu, tile_fb_ms, tile_fb_cpu;
    auto fwd_fn = [&] { functional::gs_apply(chain, x, blocks); };
    auto fb_fn = fwdbwd_op(fused);
    for (int round = 0; round < 3; ++round) {
      for (bool use_row : {true, false}) {
        if (!use_row && !row) continue;
        functional::set_row_kernels(use_row);
        const Timing f = time_ms(fwd_fn, 1, 3, min_s / 3), fb = time_ms(fb_fn, 1, 3, min_s / 3);
        (use_row ? fwd_ms : tile_fwd_ms).push_back(f.median);
        (use_row ? fwd_cpu : tile_fwd_cpu).push_back(f.cpu_median);
        (use_row ? fb_ms : tile_fb_ms).push_back(fb.median);
        (use_row ? fb_cpu : tile_fb_cpu).push_back(fb.cpu_median);
      }
    }
    functional::set_row_kernels(true);
    const double fused_fwd = median_of(fwd_ms), fused_fb = median_of(fb_ms);
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
    auto reference = [&](auto& xg, auto& Rg, auto& Lg) { return functional::reference_butterfly_multiply(xg, Rg, Lg); };
    const double ref_fb = median_ms(fwdbwd_op(reference), 2, 5, min_s);
    const double flops = 4.0 * sh.rows * sh.n * sh.b;
    nlohmann::json j{{"rows", sh.rows},
                     {"n", sh.n},
                     {"block_size", sh.b},
                     {"row_kernels", row},
                     {"fused_fwd_ms", fused_fwd},
                     {"fused_fwdbwd_ms", fused_fb},
                     {"fused_fwd_cpu_ms", median_of(fwd_cpu)},
                     {"fused_fwdbwd_cpu_ms", median_of(fb_cpu)},
                     {"reference_fwd_ms", ref_fwd},
                     {"reference_fwdbwd_ms", ref_fb},
                     {"copy_ms", copy},
                     {"dense_fwd_ms", dense},
                     {"blocks_cayley_ms", cayley_ms},
                     {"gemm_gflops", gflops},
                     {"fused_fwd_gflops", flops / (fused_fwd * 1e6)},
                     {"threads", at::get_num_threads()}};
    if (row) {
      // The same product on the general tile kernels (set_row_kernels(false)), measured alternately.
      j["tile_fwd_ms"] = median_of(tile_fwd_ms);
      j["tile_fwdbwd_ms"] = median_of(tile_fb_ms);
      j["tile_fwd_cpu_ms"] = median_of(tile_fwd_cpu);
      j["tile_fwdbwd_cpu_ms"] = median_of(tile_fb_cpu);
    }
    std::cout << j.dump() << std::endl;
  }
}

struct BenchAdaptersOptions {
  int64_t rows = 4096;
  int64_t features = 768;
  double min_seconds = 0.3;
  int rounds = 3;
  bool merge = true;
  bool conv = true;
};

AdapterConfig bench_config(Method m, int64_t block_size, int64_t factors = 1, int64_t rank = 8) {
  AdapterConfig c;
  c.method = m;
  c.target_modules = {"layer"};
  c.block_size = block_size;
  c.boft_n_butterfly_factor = factors;
  c.r = rank;
  c.lora_alpha = static_cast<double>(rank);
  c.init_weights = false;
  return c;
}

// Time of merging GSOFT b = 8 into the 72 linear layers of RoBERTa-base (12 x {4 x 768->768,
// 768->3072, 3072->768}): the adapters' structured merge vs a dense merge that builds
// Q = P_L BD(L) P BD(R) from dense permutation and block-diagonal matrices, then diag(s) W Q.
void bench_merge(double min_seconds) {
  torch::NoGradGuard g;
  std::vector<std::pair<int64_t, int64_t>> shapes;  // (in, out)
  for (int l = 0; l < 12; ++l) {
    for (int q = 0; q < 4; ++q) shapes.emplace_back(768, 768);
    shapes.emplace_back(768, 3072);
    shapes.emplace_back(3072, 768);
  }
  auto cfg = bench_config(Method::GSOFT, 8);
  std::vector<torch::Tensor> weights;
  std::vector<std::shared_ptr<LinearAdapter>> adapters;
  for (auto [in, out] : shapes) {
    weights.push_back(torch::randn({out, in}));
    adapters.push_back(make_linear_adapter(cfg, in, out));
  }
  const double structured = median_ms(
      [&] {
        for (size_t i = 0; i < shapes.size(); ++i) adapters[i]->merged_weight(weights[i]);
      },
      1, 3, min_seconds);
  const double dense = median_ms(
      [&] {
        for (size_t i = 0; i < shapes.size(); ++i) {
          const int64_t n = shapes[i].first;
          const auto chain = gs_orthogonal_chain(n, n / 8, cfg.layout);
          std::map<std::string, torch::Tensor> p;
          for (const auto& [name, t] : adapters[i]->named_parameters()) p[name] = t;
          auto Q = chain.perms()[2].matrix()
                       .matmul(functional::block_diag(functional::cayley(p.at("gsoft_L"))))
                       .matmul(chain.perms()[1].matrix())
                       .matmul(functional::block_diag(functional::cayley(p.at("gsoft_R"))));
          (void)(p.at("gsoft_s").unsqueeze(1) * weights[i].matmul(Q));
        }
      },
      1, 3, min_seconds);
  nlohmann::json j{{"bench", "merge_roberta_base_gsoft_b8"}, {"layers", shapes.size()},
                   {"structured_ms", structured}, {"dense_q_ms", dense}, {"speedup", dense / structured}};
  std::cout << j.dump() << std::endl;
}

// One adapted layer of a bench: its label, trainable parameters, and the layer's call.
struct LayerCase {
  std::string label;
  int64_t params = 0;
  std::function<torch::Tensor(const torch::Tensor&)> run;
};

// Times every case's run(x) without autograd and run(x).backward(gy) with x requiring grad (as
// inside a network: the backward computes dx and the adapter's gradients), then prints one JSON
// line per case. The cases take turns in `rounds` rounds, the order rotating each round, so that
// a change in the machine's load hits all of them; each ratio to cases[0] (the frozen layer) is
// taken within a round, and the line gives the median and the largest of those ratios. The
// per-round medians are printed too, so that any other pair can be compared round by round.
void bench_layers(const std::string& layer, const std::vector<LayerCase>& cases, const torch::Tensor& x,
                  const torch::Tensor& gy, double min_seconds, int rounds, const nlohmann::json& extra) {
  const size_t n = cases.size();
  std::vector<std::vector<double>> fwd(n), fb(n), fb_cpu(n);
  std::vector<double> worst(n, 0.0);
  std::vector<int64_t> reps(n, 0);
  auto xg = x.detach().requires_grad_(true);
  for (int r = 0; r < rounds; ++r) {
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (k + static_cast<size_t>(r)) % n;
      const auto& run = cases[i].run;
      fwd[i].push_back(median_ms(
          [&] {
            torch::NoGradGuard g;
            run(x);
          },
          r == 0 ? 2 : 1, 3, min_seconds / (2 * rounds)));
      const Timing t = time_ms(
          [&] {
            xg.mutable_grad().reset();  // as in a network: the input's gradient is new each step
            run(xg).backward(gy);
          },
          r == 0 ? 2 : 1, 3, min_seconds / rounds);
      fb[i].push_back(t.median);
      fb_cpu[i].push_back(t.cpu_median);
      worst[i] = std::max(worst[i], t.worst);
      reps[i] += t.reps;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> ratio, cpu_ratio;
    for (int r = 0; r < rounds; ++r) {
      ratio.push_back(fb[i][r] / fb[0][r]);
      cpu_ratio.push_back(fb_cpu[i][r] / fb_cpu[0][r]);
    }
    nlohmann::json j = extra;
    j.update({{"layer", layer}, {"method", cases[i].label}, {"trainable_params", cases[i].params},
              {"fwd_ms", median_of(fwd[i])}, {"fwdbwd_ms", median_of(fb[i])}, {"fwdbwd_worst_ms", worst[i]},
              {"fwdbwd_cpu_ms", median_of(fb_cpu[i])}, {"reps", reps[i]}, {"rounds", rounds},
              {"fwdbwd_round_ms", fb[i]}, {"fwdbwd_round_cpu_ms", fb_cpu[i]},
              {"fwdbwd_vs_" + cases[0].label, median_of(ratio)},
              {"fwdbwd_vs_" + cases[0].label + "_max", *std::max_element(ratio.begin(), ratio.end())},
              {"fwdbwd_cpu_vs_" + cases[0].label, median_of(cpu_ratio)},
              {"threads", at::get_num_threads()}});
    std::cout << j.dump() << std::endl;
  }
}

// A 3 x 3 convolution of the DreamBooth UNet's middle stage (64 -> 64 channels on 16 x 16, batch
// 8: 2,048 patches of 576 values). Adapters train through the adapted weight W'; "gsoft_b16
// (patch rows)" times the alternative, the adapter run on every unfolded patch, for the record.
void bench_conv_adapters(const BenchAdaptersOptions& opt) {
  namespace F = torch::nn::functional;
  const auto options = torch::nn::Conv2dOptions(64, 64, 3).padding(1);
  auto x = torch::randn({8, 64, 16, 16});
  auto gy = torch::randn({8, 64, 16, 16});
  struct Row {
    std::string label;
    std::optional<AdapterConfig> config;
    bool patch_rows = false;
  };
  const std::vector<Row> rows{{"frozen", std::nullopt},
                              {"gsoft_b16", bench_config(Method::GSOFT, 16)},
                              {"gsoft_b16 (patch rows)", bench_config(Method::GSOFT, 16), true},
                              {"double_gsoft_b16", bench_config(Method::DoubleGSOFT, 16)},
                              {"oft_b16", bench_config(Method::OFT, 16)},
                              {"boft_b8_m4", bench_config(Method::BOFT, 8, 4)},
                              {"lora_r8", bench_config(Method::LoRA, 0, 1, 8)}};
  std::vector<LayerCase> cases;
  for (const auto& row : rows) {
    AdaptableConv2d layer(options);
    layer->weight.set_requires_grad(false);
    layer->bias.set_requires_grad(false);
    int64_t params = 0;
    if (row.config) {
      auto a = make_linear_adapter(*row.config, 64 * 9, 64);
      layer->attach(a);
      params = a->num_parameters();
    }
    const bool patch_rows = row.patch_rows;
    const auto out_sizes = gy.sizes().vec();
    cases.push_back({row.label, params, [layer, patch_rows, out_sizes](const torch::Tensor& in) mutable {
                       if (!patch_rows) return layer(in);
                       const auto patches = F::unfold(in, F::UnfoldFuncOptions({3, 3}).padding({1, 1}));
                       const auto y = layer->adapter()->forward(patches.transpose(1, 2), layer->weight.view({64, -1}),
                                                                layer->bias, true);
                       return y.transpose(1, 2).reshape(out_sizes);
                     }});
  }
  bench_layers("conv3x3", cases, x, gy, opt.min_seconds, opt.rounds, {{"input", "8x64x16x16"}});
}

void run_bench_adapters(const BenchAdaptersOptions& opt) {
  torch::manual_seed(0);
  const int64_t n = opt.features;
  struct Row {
    std::string label;
    std::optional<AdapterConfig> config;
  };
  std::vector<Row> rows{{"frozen", std::nullopt},
                        {"gsoft_b8", bench_config(Method::GSOFT, 8)},
                        {"double_gsoft_b8", bench_config(Method::DoubleGSOFT, 8)},
                        {"oft_b16", bench_config(Method::OFT, 16)},
                        {"boft_b8_m2", bench_config(Method::BOFT, 8, 2)},
                        {"boft_b8_m4", bench_config(Method::BOFT, 8, 4)},
                        {"lora_r8", bench_config(Method::LoRA, 0, 1, 8)}};
  auto x = torch::randn({opt.rows, n});
  auto gy = torch::randn({opt.rows, n});
  std::vector<LayerCase> cases;
  for (const auto& row : rows) {
    AdaptableLinear layer(n, n);
    layer->weight.set_requires_grad(false);
    layer->bias.set_requires_grad(false);
    int64_t params = 0;
    if (row.config) {
      auto a = make_linear_adapter(*row.config, n, n);
      layer->attach(a);
      params = a->num_parameters();
    }
    cases.push_back({row.label, params, [layer](const torch::Tensor& in) mutable { return layer(in); }});
  }
  bench_layers("linear", cases, x, gy, opt.min_seconds, opt.rounds, {{"rows", opt.rows}, {"features", n}});
  if (opt.conv) bench_conv_adapters(opt);
  if (opt.merge) bench_merge(opt.min_seconds);
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

  auto ad = std::make_shared<BenchAdaptersOptions>();
  auto* acmd = bench->add_subcommand(
      "adapters",
      "Forward and forward+backward (median and worst) of a Linear and of a 3x3 Conv2d with each adapter (base\n"
      "frozen, input requiring grad), then the time to merge GSOFT into RoBERTa-base's 72 layers, structured vs dense Q.\n"
      "fwdbwd_cpu_ms is the process's CPU time (all threads) of the median fwd+bwd, steadier on a shared machine.");
  acmd->add_option("--rows", ad->rows, "Batch rows")->capture_default_str()->check(CLI::PositiveNumber);
  acmd->add_option("--features", ad->features, "in = out features (divisible by 16)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  acmd->add_option("--min-seconds", ad->min_seconds, "Minimum timed fwd+bwd seconds per method, over all rounds")->capture_default_str()
      ->check(CLI::PositiveNumber);
  acmd->add_option("--rounds", ad->rounds,
                   "The methods take turns this many times (order rotating), each time for min-seconds / rounds;\n"
                   "fwdbwd_vs_frozen is the median of the per-round ratios, _max the largest")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  acmd->add_flag("!--no-merge", ad->merge, "Skip the merge benchmark");
  acmd->add_flag("!--no-conv", ad->conv, "Skip the Conv2d benchmark");
  runners.push_back({acmd, [ad] { run_bench_adapters(*ad); }});

  setup_bench_train(bench, runners);
  setup_bench_lipconv(bench, runners);
}

}  // namespace gsoft::cli
