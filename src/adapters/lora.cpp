// LoRA: y = W x + b + (alpha / r) B A dropout(x), A: (r, in), B: (out, r), B = 0 at init.
#include <torch/torch.h>

#include <cmath>

#include "methods.h"

namespace gsoft::adapters {
namespace {

class LoRAAdapter : public LinearAdapter {
 public:
  LoRAAdapter(const AdapterConfig& c, int64_t in, int64_t out)
      : scaling_(c.lora_alpha / static_cast<double>(c.r)), dropout_(c.lora_dropout) {
    A_ = torch::empty({c.r, in});
    torch::nn::init::kaiming_uniform_(A_, std::sqrt(5.0));  // PEFT's default for lora_A
    B_ = c.init_weights ? torch::zeros({out, c.r}) : 0.1 * torch::randn({out, c.r});
    A_.requires_grad_(true);
    B_.requires_grad_(true);
  }
  Method method() const override { return Method::LoRA; }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                        bool training) const override {
    namespace F = torch::nn::functional;
    auto base = F::linear(x, weight, bias);
    auto h = dropout_ > 0 ? torch::dropout(x, dropout_, training) : x;
    return base + scaling_ * F::linear(F::linear(h, A_), B_);
  }
  torch::Tensor adapted_weight(const torch::Tensor& weight, bool training) const override {
    if (training && dropout_ > 0) return {};
    return weight + scaling_ * torch::matmul(B_, A_).to(weight.scalar_type());
  }
  torch::Tensor unmerged_weight(const torch::Tensor& merged) const override {
    torch::NoGradGuard g;
    return merged.to(torch::kFloat32) - scaling_ * torch::matmul(B_, A_);
  }

 protected:
  Slots slots() override { return {{"lora_A.weight", &A_}, {"lora_B.weight", &B_}}; }

 private:
  double scaling_, dropout_;
  torch::Tensor A_, B_;
};

}  // namespace

std::shared_ptr<LinearAdapter> make_lora(const AdapterConfig& c, int64_t in, int64_t out, const std::string&) {
  return std::make_shared<LoRAAdapter>(c, in, out);
}

}  // namespace gsoft::adapters
