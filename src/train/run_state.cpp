#include "train/run_state.h"

#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "gsoft/core/error.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/safetensors.h"
#include "io/file_util.h"

namespace gsoft::train_detail {

void save_run_state(const std::string& path, const std::map<std::string, torch::Tensor>& params, const Optimizer& optimizer,
                    int64_t step, const nlohmann::json& options, const std::map<std::string, std::string>& extra) {
  std::map<std::string, torch::Tensor> t = optimizer.state();
  for (const auto& [name, p] : params) t["param." + name] = p.detach();
  t["rng.cpu"] = at::detail::getDefaultCPUGenerator().get_state();
  std::map<std::string, std::string> metadata = extra;
  metadata["step"] = std::to_string(step);
  metadata["options"] = options.dump();
  io::write_safetensors(path, t, metadata);
}

RunState load_run_state(const std::string& path, const std::map<std::string, torch::Tensor>& params, Optimizer& optimizer,
                        const nlohmann::json& options) {
  io::SafetensorsFile f = io::read_safetensors(path);
  const nlohmann::json saved = io::parse_json(f.metadata["options"], path + " options");
  for (auto it = options.begin(); it != options.end(); ++it)
    GSOFT_CHECK(saved.contains(it.key()) && saved[it.key()] == it.value(), path, ": written with ", it.key(), " = ",
                saved.value(it.key(), nlohmann::json()).dump(), ", but this run has ", it.key(), " = ", it.value().dump(),
                " (use another output directory, or the same options)");
  GSOFT_CHECK(f.tensors.count("rng.cpu") && f.metadata.count("step"), path, ": not a gsoft run checkpoint (no rng.cpu or step)");
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : params) {
    auto t = f.tensors.find("param." + name);
    GSOFT_CHECK(t != f.tensors.end(), path, ": no tensor for trainable parameter '", name, "'");
    GSOFT_CHECK(t->second.sizes() == p.sizes(), path, ": '", name, "' has shape ", format_shape(t->second.sizes()),
                ", the model's is ", format_shape(p.sizes()));
    p.copy_(t->second);
  }
  optimizer.load_state(f.tensors);
  at::Generator g = at::detail::getDefaultCPUGenerator();  // a handle on the same generator
  g.set_state(f.tensors.at("rng.cpu"));
  RunState s;
  const std::string& step = f.metadata.at("step");
  GSOFT_CHECK(!step.empty() && step.size() < 19 && step.find_first_not_of("0123456789") == std::string::npos, path,
              ": metadata step is '", step, "', expected a non-negative integer");
  s.step = std::stoll(step);
  s.metadata = std::move(f.metadata);
  return s;
}

void check_finite_loss(double loss, int64_t step, const std::string& what, const std::string& checkpoint) {
  if (std::isfinite(loss)) return;
  throw std::runtime_error("step " + std::to_string(step) + ": loss is " + std::to_string(loss) + "; " + what +
                           " stopped. The last good checkpoint is " +
                           (std::filesystem::exists(checkpoint) ? checkpoint : std::string("(none yet)")) +
                           "; try a lower learning rate or gradient clipping");
}

std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch));
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

int64_t start_or_resume(const std::string& dir, bool resume, const std::map<std::string, torch::Tensor>& state,
                        Optimizer& optimizer, const nlohmann::json& options, int64_t max_steps,
                        const std::function<void(const std::string&)>& on_event, bool writer) {
  const std::filesystem::path ckpt = std::filesystem::path(dir) / "checkpoint.safetensors";
  const std::filesystem::path log = std::filesystem::path(dir) / "metrics.jsonl";
  if (!resume || !std::filesystem::exists(ckpt)) {
    if (writer) std::filesystem::remove(log);
    return 0;
  }
  const int64_t step = load_run_state(ckpt.string(), state, optimizer, options).step;
  if (writer) trim_metrics(log.string(), step);
  if (on_event) on_event("resumed from step " + std::to_string(step) + " of " + std::to_string(max_steps));
  return step;
}

uint64_t step_seed(uint64_t seed, int64_t step, uint32_t stream) {
  std::seed_seq s{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(step),
                  static_cast<uint32_t>(static_cast<uint64_t>(step) >> 32), stream};
  std::array<uint32_t, 2> v{};
  s.generate(v.begin(), v.end());
  return (static_cast<uint64_t>(v[0]) << 32) | v[1];
}

void append_jsonl(const std::string& path, const nlohmann::json& line) {
  std::ofstream f(path, std::ios::app);
  f << line.dump() << '\n';
}

void trim_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value("step", int64_t{0}) <= step) kept += line + "\n";
  }
  io::write_file_atomic(path, kept);
}

}  // namespace gsoft::train_detail
