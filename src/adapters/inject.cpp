#include "gsoft/adapters/inject.h"

#include <torch/torch.h>

#include <iomanip>
#include <regex>
#include <functional>
#include <optional>
#include <sstream>

#include "gsoft/adapters/adaptable_layer.h"
#include "gsoft/core/error.h"

namespace gsoft {

bool name_matches_suffix(const std::string& name, const std::string& suffix) {
  if (name == suffix) return true;
  return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
         name[name.size() - suffix.size() - 1] == '.';
}

namespace {
bool matches_any(const std::vector<std::string>& suffixes, const std::string& name) {
  for (const auto& s : suffixes)
    if (name_matches_suffix(name, s)) return true;
  return false;
}
}  // namespace

namespace {

// The config's targets with target_regex compiled once.
class TargetMatcher {
 public:
  explicit TargetMatcher(const AdapterConfig& config) : config_(config) {
    if (config.target_regex.empty()) return;
    try {
      regex_.emplace(config.target_regex);
    } catch (const std::regex_error& e) {
      throw std::invalid_argument("target_regex '" + config.target_regex + "' is not a valid regex: " + e.what());
    }
  }
  bool operator()(const std::string& name) const {
    if (name.empty() || matches_any(config_.exclude_modules, name)) return false;
    if (matches_any(config_.target_modules, name)) return true;
    return regex_ && std::regex_match(name, *regex_);
  }

 private:
  const AdapterConfig& config_;
  std::optional<std::regex> regex_;
};

}  // namespace

bool is_target(const AdapterConfig& config, const std::string& name) { return TargetMatcher(config)(name); }

InjectionReport inject_adapters(torch::nn::Module& root, const AdapterConfig& config) {
  config.validate();
  InjectionReport report;
  auto modules = root.named_modules("", /*include_self=*/false);
  if (config.method == Method::Full) {
    for (auto& p : root.parameters()) p.set_requires_grad(true);
  } else {
    for (auto& p : root.parameters()) p.set_requires_grad(false);
    const TargetMatcher is_target_module(config);
    for (const auto& item : modules) {
      if (!is_target_module(item.key())) continue;
      auto* layer = dynamic_cast<AdaptableLayer*>(item.value().get());
      GSOFT_CHECK(layer != nullptr, to_string(config.method), ": target '", item.key(), "' is a ",
                  item.value()->name(), "; adapters attach to gsoft::AdaptableLinear and gsoft::AdaptableConv2d layers");
      const int64_t in = layer->adapter_in_features(), out = layer->adapter_out_features();
      auto adapter = make_linear_adapter(config, in, out, item.key());
      layer->attach(adapter);
      report.adapted.push_back({item.key(), in, out, adapter->num_parameters()});
      report.adapter_params += adapter->num_parameters();
    }
    std::string targets;
    for (const auto& t : config.target_modules) targets += (targets.empty() ? "" : ", ") + t;
    if (!config.target_regex.empty()) targets += (targets.empty() ? "regex " : ", regex ") + config.target_regex;
    GSOFT_CHECK(!report.adapted.empty(), to_string(config.method), ": no module matched the targets (",
                targets, ")");
  }
  for (const auto& item : modules) {
    if (!matches_any(config.modules_to_save, item.key())) continue;
    report.saved_modules.push_back(item.key());
    for (auto& p : item.value()->parameters()) p.set_requires_grad(true);
  }
  for (const auto& p : root.parameters()) {
    report.total_params += p.numel();
    if (p.requires_grad()) report.trainable_params += p.numel();
  }
  return report;
}

std::string InjectionReport::to_string() const {
  std::ostringstream os;
  for (const auto& m : adapted)
    os << std::left << std::setw(56) << m.name << " " << std::right << std::setw(6) << m.in_features << " -> "
       << std::setw(6) << m.out_features << "  " << std::setw(10) << m.trainable_params << "\n";
  for (const auto& s : saved_modules) os << std::left << std::setw(56) << s << " (trained in full)\n";
  os << "adapted modules: " << adapted.size() << ", adapter parameters: " << adapter_params
     << ", trainable: " << trainable_params << " of " << total_params << " ("
     << std::fixed << std::setprecision(3)
     << (total_params ? 100.0 * static_cast<double>(trainable_params) / static_cast<double>(total_params) : 0.0)
     << "%)\n";
  return os.str();
}

namespace {
}  // namespace

void for_each_adapted_layer(torch::nn::Module& root,
                            const std::function<void(const std::string&, AdaptableLayer&)>& f) {
  // include_self would need the root in a shared_ptr; check it by hand instead.
  if (auto* self = dynamic_cast<AdaptableLayer*>(&root); self && self->adapter()) f("", *self);
  for (const auto& item : root.named_modules("", /*include_self=*/false))
    if (auto* layer = dynamic_cast<AdaptableLayer*>(item.value().get()); layer && layer->adapter())
      f(item.key(), *layer);
}

namespace {
template <typename F>
void for_each_adaptable(torch::nn::Module& root, F&& f) {
  for_each_adapted_layer(root, [&](const std::string&, AdaptableLayer& l) { f(l); });
}
}  // namespace

void merge_adapters(torch::nn::Module& root, bool safe_merge) {
  for_each_adaptable(root, [&](AdaptableLayer& l) { l.merge(safe_merge); });
}

void unmerge_adapters(torch::nn::Module& root) {
  for_each_adaptable(root, [](AdaptableLayer& l) { l.unmerge(); });
}

}  // namespace gsoft
