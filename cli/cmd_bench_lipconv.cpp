// gsoft bench lipconv: milliseconds of a LipConvNet training step (forward, backward, SGD) and of
// an evaluation forward (eval_terms), for SOC and GS-SOC variants, measured side by side in one
// process, with each variant's speed-up over SOC.
#include <torch/torch.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "gsoft/conv/lipconvnet.h"
#include "gsoft/train/optim.h"
#include "lipconv_options.h"
#include "timing.h"

namespace gsoft::cli {
namespace {

struct BenchLipconvOptions {
  std::vector<std::string> variants{"soc", "4", "4,1", "4,2"};
  int64_t depth = 15, batch = 32, input_size = 32, classes = 10, steps = 5;
};

void run_bench_lipconv(const BenchLipconvOptions& o) {
  double soc_train = 0, soc_eval = 0;
  for (const auto& v : o.variants) {
    LipConvArchOptions arch;
    arch.depth = o.depth;
    if (v == "soc") arch.conv = "soc";
    else arch.conv = "gs-soc", arch.groups = v;
    const conv::LipConvNetOptions opts = arch.to_options(3, o.input_size, o.classes);
    torch::manual_seed(0);
    conv::LipConvNet net(opts);
    std::vector<std::pair<std::string, torch::Tensor>> params;
    for (const auto& p : net->named_parameters()) params.emplace_back(p.key(), p.value());
    SGD sgd(params, SGDOptions{});
    const torch::Tensor x = torch::randn({o.batch, 3, o.input_size, o.input_size});
    const torch::Tensor y = torch::randint(0, o.classes, {o.batch}, torch::kLong);
    net->train();
    const double train_ms = median_ms(
        [&] {
          sgd.zero_grad();
          torch::nn::functional::cross_entropy(net->forward(x), y).backward();
          sgd.step();
        },
        1, static_cast<int>(o.steps), 0.0);
    net->eval();
    const double eval_ms = median_ms(
        [&] {
          torch::NoGradGuard g;
          net->forward(x);
        },
        1, static_cast<int>(o.steps), 0.0);
    if (v == "soc") soc_train = train_ms, soc_eval = eval_ms;
    nlohmann::json j{{"conv", opts.describe()}, {"depth", o.depth}, {"batch", o.batch}, {"input_size", o.input_size},
                     {"params", conv::count_trainable_parameters(*net)}, {"train_step_ms", train_ms},
                     {"eval_forward_ms", eval_ms}, {"threads", at::get_num_threads()}};
    if (soc_train > 0) j["train_speedup_vs_soc"] = soc_train / train_ms, j["eval_speedup_vs_soc"] = soc_eval / eval_ms;
    std::cout << j.dump() << std::endl;
  }
}

}  // namespace

void setup_bench_lipconv(CLI::App* bench, Runners& runners) {
  auto o = std::make_shared<BenchLipconvOptions>();
  auto* cmd = bench->add_subcommand(
      "lipconv",
      "Training-step and evaluation-forward time of LipConvNet-15 (32x32, batch 32) with SOC and GS-SOC (4,-), (4,1),\n"
      "(4,2), one JSON object per line with the speed-up over SOC (run soc first). Variants: soc, or GS-SOC groups 'a'/'a,b'.");
  cmd->add_option("--variants", o->variants, "Variants, in order (soc first for speed-ups)")->delimiter(';')->capture_default_str();
  cmd->add_option("--depth", o->depth, "LipConvNet depth")->capture_default_str();
  cmd->add_option("--batch", o->batch, "Batch size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--input-size", o->input_size, "Input side")->capture_default_str();
  cmd->add_option("--classes", o->classes, "Classes")->capture_default_str();
  cmd->add_option("--steps", o->steps, "Timed repetitions (median, after one warm-up)")->capture_default_str()
      ->check(CLI::PositiveNumber);
  runners.push_back({cmd, [o] { run_bench_lipconv(*o); }});
}

}  // namespace gsoft::cli
