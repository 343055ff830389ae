#pragma once
// AdamW with decoupled weight decay (Loshchilov & Hutter, as torch.optim.AdamW), parameter groups
// with their own learning rates, and a state that saves to named tensors so checkpoints are plain
// safetensors files.
#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

namespace gsoft {

struct ParamGroup {
  std::string name;  // e.g. "adapter", "head"
  std::vector<std::pair<std::string, torch::Tensor>> params;
  double lr = 1e-3;
  double weight_decay = 0.0;
};

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

// What a checkpoint needs from an optimiser: its state as named tensors, and back.
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  virtual std::map<std::string, torch::Tensor> state() const = 0;
  // Checks every name and shape.
  virtual void load_state(const std::map<std::string, torch::Tensor>& state) = 0;
};

class AdamW : public Optimizer {
 public:
  explicit AdamW(std::vector<ParamGroup> groups, AdamWOptions options = {});
  // One update of every parameter with a gradient; each group's lr is multiplied by lr_factor
  // (the schedule).
  void step(double lr_factor = 1.0);
  void zero_grad();
  int64_t steps() const { return steps_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }

  // "adamw.m.<param>", "adamw.v.<param>" and "adamw.step"; load_state checks every name and shape.
  std::map<std::string, torch::Tensor> state() const override;
  void load_state(const std::map<std::string, torch::Tensor>& state) override;

 private:
  std::vector<ParamGroup> groups_;
  AdamWOptions options_;
  std::map<std::string, torch::Tensor> m_, v_;
  int64_t steps_ = 0;
};

struct SGDOptions {
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 5e-4;  // coupled (added to the gradient), as torch.optim.SGD
};

// SGD with heavy-ball momentum, as torch.optim.SGD (dampening 0, no Nesterov).
class SGD : public Optimizer {
 public:
  SGD(std::vector<std::pair<std::string, torch::Tensor>> params, SGDOptions options);
  void step(double lr_factor = 1.0);
  void zero_grad();
  // "sgd.momentum.<param>" for every parameter that has had a step.
  std::map<std::string, torch::Tensor> state() const override;
  void load_state(const std::map<std::string, torch::Tensor>& state) override;

 private:
  std::vector<std::pair<std::string, torch::Tensor>> params_;
  SGDOptions options_;
  std::map<std::string, torch::Tensor> momentum_;
};

// The factor of a step schedule: 1, then `gamma` after each milestone (a share of `total`), e.g.
// {0.5, 0.75} with 0.1 gives 1, 0.1, 0.01 as torch's MultiStepLR stepped per iteration.
double multistep_schedule(int64_t step, int64_t total, const std::vector<double>& milestones, double gamma);

// Linear warm-up over `warmup` steps to 1, then linear decay to 0 at `total` (Hugging Face's
// get_linear_schedule_with_warmup, counting the step being taken: step 0 of 10 warm-up steps
// uses 0.1, not 0).
double linear_schedule(int64_t step, int64_t warmup, int64_t total);

// Scales the gradients so their global L2 norm is at most max_norm; returns the norm before.
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace gsoft
