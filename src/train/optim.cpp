#include "gsoft/train/optim.h"

#include <torch/torch.h>

#include <cmath>
#include <set>

#include "gsoft/core/error.h"

namespace gsoft {

AdamW::AdamW(std::vector<ParamGroup> groups, AdamWOptions options) : groups_(std::move(groups)), options_(options) {
  std::set<std::string> seen;
  for (const auto& g : groups_)
    for (const auto& [name, p] : g.params) {
      GSOFT_CHECK(seen.insert(name).second, "AdamW: parameter '", name, "' is in two groups");
      m_[name] = torch::zeros_like(p, torch::MemoryFormat::Contiguous);
      v_[name] = torch::zeros_like(p, torch::MemoryFormat::Contiguous);
    }
}

void AdamW::step(double lr_factor) {
  torch::NoGradGuard no_grad;
  ++steps_;
  const double b1 = options_.beta1, b2 = options_.beta2;
  const double bc1 = 1 - std::pow(b1, static_cast<double>(steps_));
  const double bc2 = 1 - std::pow(b2, static_cast<double>(steps_));
  for (auto& g : groups_) {
    const double lr = g.lr * lr_factor;
    for (auto& [name, p] : g.params) {
      const torch::Tensor grad = p.grad();
      if (!grad.defined()) continue;
      if (g.weight_decay != 0) p.mul_(1 - lr * g.weight_decay);
      torch::Tensor& m = m_[name];
      torch::Tensor& v = v_[name];
      m.mul_(b1).add_(grad, 1 - b1);
      v.mul_(b2).addcmul_(grad, grad, 1 - b2);
      const torch::Tensor denom = (v.sqrt() / std::sqrt(bc2)).add_(options_.eps);
      p.addcdiv_(m, denom, -lr / bc1);
    }
  }
}

void AdamW::zero_grad() {
  for (auto& g : groups_)
    for (auto& [name, p] : g.params)
      if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
}

std::map<std::string, torch::Tensor> AdamW::state() const {
  std::map<std::string, torch::Tensor> s;
  for (const auto& [name, t] : m_) s["adamw.m." + name] = t;
  for (const auto& [name, t] : v_) s["adamw.v." + name] = t;
  s["adamw.step"] = torch::tensor({steps_}, torch::kLong);
  return s;
}

void AdamW::load_state(const std::map<std::string, torch::Tensor>& s) {
  auto get = [&](const std::string& key, const torch::Tensor& like) {
    auto it = s.find(key);
    GSOFT_CHECK(it != s.end(), "AdamW state: missing '", key, "'");
    GSOFT_CHECK(it->second.sizes() == like.sizes(), "AdamW state '", key, "': expected shape ", format_shape(like.sizes()),
                ", found ", format_shape(it->second.sizes()));
    return it->second.to(like.dtype()).contiguous().clone();
  };
  std::map<std::string, torch::Tensor> m, v;
  for (const auto& [name, t] : m_) m[name] = get("adamw.m." + name, t);
  for (const auto& [name, t] : v_) v[name] = get("adamw.v." + name, t);
  auto it = s.find("adamw.step");
  GSOFT_CHECK(it != s.end() && it->second.numel() == 1, "AdamW state: missing 'adamw.step'");
  m_ = std::move(m);
  v_ = std::move(v);
  steps_ = it->second.to(torch::kLong).item<int64_t>();
}

SGD::SGD(std::vector<std::pair<std::string, torch::Tensor>> params, SGDOptions options)
    : params_(std::move(params)), options_(options) {}

void SGD::step(double lr_factor) {
  torch::NoGradGuard g;
  const double lr = options_.lr * lr_factor;
  for (auto& [name, p] : params_) {
    if (!p.grad().defined()) continue;
    torch::Tensor d = p.grad();
    if (options_.weight_decay != 0) d = d + options_.weight_decay * p;
    auto it = momentum_.find(name);
    if (options_.momentum != 0) {
      if (it == momentum_.end()) it = momentum_.emplace(name, d.clone()).first;  // torch: first buffer = gradient
      else it->second.mul_(options_.momentum).add_(d);
      d = it->second;
    }
    p.add_(d, -lr);
  }
}

void SGD::zero_grad() {
  for (auto& [name, p] : params_)
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
}

std::map<std::string, torch::Tensor> SGD::state() const {
  std::map<std::string, torch::Tensor> s;
  for (const auto& [name, t] : momentum_) s["sgd.momentum." + name] = t;
  return s;
}

void SGD::load_state(const std::map<std::string, torch::Tensor>& s) {
  std::map<std::string, torch::Tensor> m;
  for (const auto& [name, p] : params_) {
    auto it = s.find("sgd.momentum." + name);
    if (it == s.end()) continue;  // no step yet
    GSOFT_CHECK(it->second.sizes() == p.sizes(), "SGD state 'sgd.momentum.", name, "': expected shape ",
                format_shape(p.sizes()), ", found ", format_shape(it->second.sizes()));
    m[name] = it->second.to(p.dtype()).contiguous().clone();
  }
  momentum_ = std::move(m);
}

double multistep_schedule(int64_t step, int64_t total, const std::vector<double>& milestones, double gamma) {
  double f = 1.0;
  for (double m : milestones)
    if (static_cast<double>(step) >= m * static_cast<double>(total)) f *= gamma;
  return f;
}

double linear_schedule(int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (total <= warmup) return 1.0;
  return std::max(0.0, static_cast<double>(total - step) / static_cast<double>(total - warmup));
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  double sq = 0;
  for (const auto& p : params)
    if (p.grad().defined()) sq += p.grad().to(torch::kDouble).pow(2).sum().item<double>();
  const double norm = std::sqrt(sq);
  if (max_norm > 0 && norm > max_norm && std::isfinite(norm)) {
    const double scale = max_norm / (norm + 1e-6);
    for (const auto& p : params)
      if (p.grad().defined()) p.mutable_grad().mul_(scale);
  }
  return norm;
}

}  // namespace gsoft
