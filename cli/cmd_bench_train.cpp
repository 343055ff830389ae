// gsoft bench train: tokens per second of a full training step (forward, backward, AdamW) of a
// BERT-base-shaped classifier with random weights, for each adapter method, and the peak memory of
// each. Every method runs in its own process (this program again, with --single) so that its peak
// resident memory is its own.
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "adapter_options.h"
#include "commands.h"
#include "polarity.h"
#include "subprocess.h"
#include "gsoft/adapters/inject.h"
#include "gsoft/core/runtime.h"
#include "gsoft/models/encoder.h"
#include "gsoft/train/optim.h"
#include "timing.h"

namespace gsoft::cli {
namespace {

struct BenchTrainOptions {
  std::vector<std::string> methods{"gsoft", "double_gsoft", "oft", "boft", "lora", "full"};
  int64_t seq = 128, batch = 8, layers = 12, hidden = 768, steps = 3, rounds = 1;
  bool single = false;
};

// Not a method: the model with no adapter, for the cost that every method pays.
const std::string kFrozen = "frozen";

// The paper's GLUE configurations (Table 1).
AdapterConfig bench_config(const std::string& method) {
  AdapterOptions o;
  o.method = method;
  return to_adapter_config(o);
}

void run_single(const BenchTrainOptions& o) {
  const std::string& method = o.methods.at(0);
  EncoderConfig c;
  c.hidden_size = o.hidden;
  c.num_hidden_layers = o.layers;
  c.num_attention_heads = std::max<int64_t>(1, o.hidden / 64);
  c.intermediate_size = 4 * o.hidden;
  c.max_position_embeddings = std::max<int64_t>(512, o.seq);
  torch::manual_seed(0);
  SequenceClassifier model(c);
  InjectionReport report;
  if (method == kFrozen) {
    // Every weight frozen but the classifier and the embeddings' LayerNorm: the backward still runs
    // through every layer, as it must for any adapter, so a method's overhead is its step minus this.
    for (const auto& p : model->named_parameters()) {
      const bool train = p.key().rfind("classifier", 0) == 0 || p.key().find("embeddings.LayerNorm") != std::string::npos;
      p.value().set_requires_grad(train);
      report.total_params += p.value().numel();
      if (train) report.trainable_params += p.value().numel();
    }
  } else {
    report = inject_adapters(*model, bench_config(method));
  }
  std::vector<ParamGroup> groups{{"all", {}, 1e-4, 0.0}};
  for (const auto& p : model->named_parameters())
    if (p.value().requires_grad()) groups[0].params.emplace_back(p.key(), p.value());
  AdamW optimizer(groups);
  const torch::Tensor ids = torch::randint(5, c.vocab_size, {o.batch, o.seq}, torch::kLong);
  const torch::Tensor mask = torch::ones({o.batch, o.seq}, torch::kLong);
  const torch::Tensor labels = torch::randint(0, c.num_labels, {o.batch}, torch::kLong);
  model->train();
  auto step = [&] {
    optimizer.zero_grad();
    sequence_classification_loss(model->forward(ids, mask), labels).backward();
    optimizer.step();
  };
  const Timing t = time_ms(step, 1, static_cast<int>(o.steps), 0.0);
  const double ms = t.median;
  const nlohmann::json j{{"method", method}, {"tokens_per_second", static_cast<double>(o.batch * o.seq) / (ms / 1e3)},
                         {"step_ms", ms}, {"step_cpu_ms", t.cpu_median}, {"trainable_params", report.trainable_params},
                         {"adapter_params", report.adapter_params}, {"peak_rss_mb", peak_rss_mb()},
                         {"batch", o.batch}, {"seq", o.seq}, {"layers", o.layers}, {"hidden", o.hidden},
                         {"threads", at::get_num_threads()}};
  std::cout << j.dump() << std::endl;
}


void run_bench_train(const BenchTrainOptions& o) {
  for (const auto& m : o.methods)  // reject a bad method before any run
    if (m != kFrozen) bench_config(m);
  if (o.single) return run_single(o);
  // Rounds of one process per method, the order rotating, so that a change in the machine's load
  // between processes hits every method; ratios are taken within a round.
  const size_t n = o.methods.size();
  std::vector<std::vector<nlohmann::json>> runs(n);
  for (int64_t r = 0; r < o.rounds; ++r)
    for (size_t k = 0; k < n; ++k) {
      const size_t i = (k + static_cast<size_t>(r)) % n;
      const std::string& m = o.methods[i];
      const std::string args = "--threads " + std::to_string(num_threads()) + " bench train --single" + " --methods " + m +
                               " --seq " + std::to_string(o.seq) + " --batch " + std::to_string(o.batch) + " --layers " +
                               std::to_string(o.layers) + " --hidden " + std::to_string(o.hidden) + " --steps " +
                               std::to_string(o.steps);
      std::cerr << "bench train: round " << r + 1 << " of " << o.rounds << ": " << m << " ..." << std::endl;
      nlohmann::json j = run_self_json(args, "", "bench train: the run for " + m);
      j["round"] = r;
      std::cout << j.dump() << std::endl;
      runs[i].push_back(std::move(j));
    }
  if (o.rounds < 2) return;
  for (size_t i = 0; i < n; ++i) {
    auto values = [&](size_t method, const char* key) {
      std::vector<double> v;
      for (const auto& j : runs[method]) v.push_back(j[key].get<double>());
      return v;
    };
    double rss = 0;
    for (const auto& j : runs[i]) rss = std::max(rss, j["peak_rss_mb"].get<double>());
    nlohmann::json s{{"summary", "median over rounds"}, {"method", o.methods[i]}, {"rounds", o.rounds},
                     {"tokens_per_second", median_of(values(i, "tokens_per_second"))},
                     {"step_ms", median_of(values(i, "step_ms"))}, {"step_cpu_ms", median_of(values(i, "step_cpu_ms"))},
                     {"peak_rss_mb", rss}, {"threads", num_threads()}};
    for (const std::string& base : {std::string("lora"), kFrozen}) {
      const auto it = std::find(o.methods.begin(), o.methods.end(), base);
      if (it == o.methods.end() || o.methods[i] == base) continue;
      const auto mine = values(i, "tokens_per_second"), theirs = values(static_cast<size_t>(it - o.methods.begin()), "tokens_per_second");
      std::vector<double> ratio;
      for (size_t r = 0; r < mine.size(); ++r) ratio.push_back(mine[r] / theirs[r]);
      s["tokens_per_second_vs_" + base] = median_of(ratio);
      s["tokens_per_second_vs_" + base + "_min"] = *std::min_element(ratio.begin(), ratio.end());
      s["tokens_per_second_vs_" + base + "_max"] = *std::max_element(ratio.begin(), ratio.end());
    }
    std::cout << s.dump() << std::endl;
  }
}

}  // namespace

void setup_bench_train(CLI::App* bench, Runners& runners) {
  auto o = std::make_shared<BenchTrainOptions>();
  auto* cmd = bench->add_subcommand(
      "train",
      "Tokens per second of a full training step (forward, backward, AdamW) of a BERT-base-shaped classifier with\n"
      "random weights, sequence 128, batch 8, for GSOFT b=8, Double GSOFT b=8, OFT b=16, BOFT b=8 m=2, LoRA r=8 and\n"
      "full fine-tuning (the paper's GLUE settings), each in its own process with its peak resident memory.\n"
      "step_cpu_ms is the process's CPU time per step (all threads): on a shared machine compare methods by it at\n"
      "--threads 1, where time given to other processes does not count. 'frozen' (not in the default list) trains\n"
      "only the classifier and the embeddings' LayerNorm, so its backward still crosses every layer: a method's\n"
      "step minus frozen's is what its adapters cost.");
  cmd->add_option("--methods", o->methods, "Methods to run, and frozen (see above)")->delimiter(',')->capture_default_str();
  cmd->add_option("--seq", o->seq, "Sequence length")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--batch", o->batch, "Batch size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--layers", o->layers, "Encoder layers")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--hidden", o->hidden, "Hidden size (a multiple of 64)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--steps", o->steps, "Timed steps per method (median reported, after one warm-up)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--rounds", o->rounds,
                  "Run every method this many times, one process each, the order rotating; then print per method the\n"
                  "median over rounds and its tokens/s ratio to lora and to frozen (when listed) taken within each round")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--single", o->single, "Run only the first method, in this process");
  runners.push_back({cmd, [o] { run_bench_train(*o); }});
}

}  // namespace gsoft::cli
