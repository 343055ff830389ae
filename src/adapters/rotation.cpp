// The rotation family: y = s * (Q_out W Q_in x) + b with GS chains Q_in (and Q_out), and an
// optional magnitude vector s. GSOFT, Double GSOFT, OFT and BOFT differ only in how their
// parameters become blocks.
#include <torch/torch.h>

#include "gsoft/core/error.h"
#include "gsoft/gs/functional.h"
#include "methods.h"

namespace gsoft::adapters {
namespace {

// Blocks B -> B^{-T}: the chain with these blocks is Q^{-T} (for merge's inverse).
std::vector<torch::Tensor> inverse_transpose(const std::vector<torch::Tensor>& blocks) {
  std::vector<torch::Tensor> out;
  for (const auto& b : blocks) out.push_back(torch::inverse(b).transpose(1, 2));
  return out;
}

// The blocks in `like`'s dtype (a float64 adapter on a float32 layer, or the reverse).
std::vector<torch::Tensor> cast(const std::vector<torch::Tensor>& blocks, const torch::Tensor& like) {
  std::vector<torch::Tensor> out;
  for (const auto& b : blocks) out.push_back(b.to(like.scalar_type()));
  return out;
}

// s's and b's gradients for out = s * y + b from out: sum over rows of g * (out - b) / s and of g,
// in one pass over g and out. Each is undefined unless asked for; b may be undefined (no bias).
std::pair<torch::Tensor, torch::Tensor> scale_shift_grads(const torch::Tensor& g2, const torch::Tensor& out2,
                                                          const torch::Tensor& s, const torch::Tensor& b, bool need_s,
                                                          bool need_b) {
  torch::Tensor gs, gb;
  if (need_s || need_b) gs = functional::column_dots(g2, out2, b, need_b ? &gb : nullptr) / s;
  return {need_s ? gs : torch::Tensor(), gb};
}

// Gradients of out = s * y (+ b) from the saved {out, s (, b)}: for y, for s (through the
// recovered y = (out - b) / s) and, with a bias, for b.
torch::autograd::variable_list scale_backward(torch::autograd::AutogradContext* ctx, const torch::Tensor& g) {
  const auto saved = ctx->get_saved_variables();
  const bool bias = saved.size() == 3;
  const int64_t n = g.size(-1);
  auto [gs, gb] = scale_shift_grads(g.reshape({-1, n}), saved[0].reshape({-1, n}), saved[1],
                                    bias ? saved[2] : torch::Tensor(), ctx->needs_input_grad(1),
                                    bias && ctx->needs_input_grad(2));
  torch::autograd::variable_list out{ctx->needs_input_grad(0) ? g * saved[1] : torch::Tensor(), gs};
  if (bias) out.push_back(gb);
  return out;
}

// out = s * (h W^T) + b for a frozen W, keeping {out, s, W (, b)} for the backward: s's and b's
// gradients come from one pass over g and out (s's input recovered as (out - b) / s), so no
// activation is kept besides the output. s rides on W's rows or on the product's rows, whichever
// is smaller (functional::scaled_mm); s W is formed again in the backward rather than kept.
torch::Tensor scaled_linear_forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& h,
                                    const torch::Tensor& w, const torch::Tensor& s, const torch::Tensor& b) {
  const auto h2 = h.reshape({-1, h.size(-1)});
  const auto out = functional::scaled_mm(h2, w, s, b);
  ctx->save_for_backward(b.defined() ? torch::autograd::variable_list{out, s, w, b}
                                     : torch::autograd::variable_list{out, s, w});
  ctx->saved_data["h_shape"] = h.sizes().vec();
  auto shape = h.sizes().vec();
  shape.back() = w.size(0);
  return out.view(shape);
}

torch::autograd::variable_list scaled_linear_backward(torch::autograd::AutogradContext* ctx, const torch::Tensor& g) {
  const auto saved = ctx->get_saved_variables();
  const auto &out = saved[0], &s = saved[1], &w = saved[2];
  const bool bias = saved.size() == 4;
  const auto g2 = g.reshape({-1, out.size(1)});
  torch::autograd::variable_list grads;
  grads.push_back(ctx->needs_input_grad(0)
                      ? functional::scaled_mm_input_grad(g2, w, s).view(ctx->saved_data["h_shape"].toIntVector())
                      : torch::Tensor());
  grads.push_back(torch::Tensor());  // W is frozen
  auto [gs, gb] = scale_shift_grads(g2, out, s, bias ? saved[3] : torch::Tensor(), ctx->needs_input_grad(2),
                                    bias && ctx->needs_input_grad(3));
  grads.push_back(gs);
  if (bias) grads.push_back(gb);
  return grads;
}

class ScaledLinearShift : public torch::autograd::Function<ScaledLinearShift> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& h, const torch::Tensor& w,
                               const torch::Tensor& s, const torch::Tensor& b) {
    return scaled_linear_forward(ctx, h, w, s, b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return scaled_linear_backward(ctx, grads[0]);
  }
};

class ScaledLinear : public torch::autograd::Function<ScaledLinear> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& h, const torch::Tensor& w,
                               const torch::Tensor& s) {
    return scaled_linear_forward(ctx, h, w, s, torch::Tensor());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return scaled_linear_backward(ctx, grads[0]);
  }
};

// out = s * y + b that keeps `out` for the backward instead of `y`: the op after an adapted layer
// (attention's matmuls, GELU) usually keeps `out` anyway, so the scale costs no activation memory
// of its own. Callers use it only where no |s| is tiny. ScaleShift has a bias, ScaleOnly none (an
// undefined tensor cannot be an autograd input here).
class ScaleShift : public torch::autograd::Function<ScaleShift> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& y, const torch::Tensor& s,
                               const torch::Tensor& b) {
    auto out = torch::addcmul(b, y, s);
    ctx->save_for_backward({out, s, b});
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return scale_backward(ctx, grads[0]);
  }
};

class ScaleOnly : public torch::autograd::Function<ScaleOnly> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& y, const torch::Tensor& s) {
    auto out = y * s;
    ctx->save_for_backward({out, s});
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    return scale_backward(ctx, grads[0]);
  }
};

class RotationAdapter : public LinearAdapter {
 public:
  // Below this |s| anywhere, recovering y = (out - b) / s would lose precision: keep y instead.
  static constexpr double kMinScaleForRecompute = 1e-3;

  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& weight,
                        const torch::Tensor& bias, bool /*training*/) const override {
    const auto s = scale();
    const bool recover = s.defined() && s.requires_grad() && s.abs().min().item<double>() > kMinScaleForRecompute;
    const bool fold = recover && !has_out_ && !weight.requires_grad() && s.scalar_type() == weight.scalar_type();
    const auto blocks = in_blocks();
    const auto ob = has_out_ ? out_blocks() : std::vector<torch::Tensor>{};
    // With at least twice as many rows as the chains' passes over W cover, applying them to W
    // (gs_linear) costs less than applying them to the batch.
    const bool double_fold = recover && has_out_ && out_blocks_orthogonal() && !weight.requires_grad();
    const int64_t rows = x.numel() / std::max<int64_t>(1, x.size(-1));
    const int64_t merge_rows = 2 * (has_out_ ? std::max(weight.size(0), weight.size(1)) : weight.size(0));
    if ((fold || double_fold) && rows >= merge_rows && x.device().is_cpu() && x.scalar_type() == weight.scalar_type() &&
        s.scalar_type() == x.scalar_type() && blocks[0].scalar_type() == x.scalar_type() &&
        (!bias.defined() || bias.scalar_type() == x.scalar_type())) {
      if (!has_out_) return functional::gs_linear(in_chain_, x, blocks, weight, s, bias);
      if (ob[0].scalar_type() == x.scalar_type())
        return functional::gs_linear(in_chain_, x, blocks, weight, s, bias, &out_chain_, ob);
    }
    auto h = functional::gs_apply(in_chain_, x, blocks);
    if (fold) return bias.defined() ? ScaledLinearShift::apply(h, weight, s, bias) : ScaledLinear::apply(h, weight, s);
    auto y = torch::nn::functional::linear(h, weight);
    if (has_out_) {
      // Rotation, scale and bias in one op that keeps only its output: Q_out's input is recovered
      // in the backward as Q_out^T ((out - b) / s), instead of being kept per layer.
      if (recover && out_blocks_orthogonal()) return functional::gs_apply_scaled(out_chain_, y, ob, s, bias);
      y = functional::gs_apply(out_chain_, y, ob);
    }
    if (recover) return bias.defined() ? ScaleShift::apply(y, s, bias) : ScaleOnly::apply(y, s);
    if (s.defined() && bias.defined()) return torch::addcmul(bias, y, s);  // one pass for both
    if (s.defined()) y = y * s;
    return bias.defined() ? y + bias : y;
  }

  // W' = diag(s) Q_out W Q_in, through the structured apply on the rows of W (never a dense Q).
  torch::Tensor adapted_weight(const torch::Tensor& weight, bool /*training*/) const override {
    auto m = functional::gs_apply_transpose(in_chain_, weight, cast(in_blocks(), weight));
    if (has_out_) m = functional::gs_apply(out_chain_, m.t(), cast(out_blocks(), weight)).t();
    if (auto s = scale(); s.defined()) m = s.to(weight.scalar_type()).unsqueeze(1) * m;
    return m;
  }

  // W = Q_out^-1 diag(s)^-1 W' Q_in^-1, with block inverses (exact for every block map).
  torch::Tensor unmerged_weight(const torch::Tensor& merged) const override {
    torch::NoGradGuard no_grad;
    auto m = merged.to(torch::kFloat32);
    if (auto s = scale(); s.defined()) m = m / s.to(torch::kFloat32).unsqueeze(1);
    if (has_out_)
      m = functional::gs_apply_transpose(out_chain_, m.t(), inverse_transpose(cast(out_blocks(), m))).t();
    return functional::gs_apply(in_chain_, m, inverse_transpose(cast(in_blocks(), m))).contiguous();
  }

 protected:
  virtual std::vector<torch::Tensor> in_blocks() const = 0;
  virtual std::vector<torch::Tensor> out_blocks() const { return {}; }
  virtual torch::Tensor scale() const { return {}; }  // (out_features) or undefined
  // Whether out_blocks() are orthogonal to float precision (Cayley, exp), so that Q_out^T undoes Q_out.
  virtual bool out_blocks_orthogonal() const { return false; }

  GSChain in_chain_;
  GSChain out_chain_;
  bool has_out_ = false;
};

// Identity blocks (zeros for the orthogonal maps, I for `free`); with init_weights=false, a small
// random perturbation of them (PEFT's N(0, 0.1)).
torch::Tensor init_blocks(const AdapterConfig& c, int64_t k, int64_t b, bool free_map) {
  auto blocks = free_map ? torch::eye(b).expand({k, b, b}).clone() : torch::zeros({k, b, b});
  return c.init_weights ? blocks : blocks + 0.1 * torch::randn({k, b, b});
}

// GSOFT (y = s * (W Q x) + b) and Double GSOFT (y = s * (Q_out W Q_in x) + b). Parameters hold
// the raw pre-map blocks, as in the authors' code: gsoft_L, gsoft_R, gsoft_out_L, gsoft_out_R.
class GSOFTAdapter : public RotationAdapter {
 public:
  GSOFTAdapter(const AdapterConfig& c, int64_t in, int64_t out, const std::string& name)
      : method_(c.method), map_(c.parametrization), terms_(c.neumann_terms) {
    const bool free_map = map_ == Parametrization::Free;
    const int64_t k = resolve_nblocks(c, in, name, "in");
    in_chain_ = gs_orthogonal_chain(in, k, c.layout);
    L_ = init_blocks(c, k, in / k, free_map).requires_grad_(true);
    R_ = init_blocks(c, k, in / k, free_map).requires_grad_(true);
    if (method_ == Method::DoubleGSOFT) {
      const int64_t ko = resolve_nblocks(c, out, name, "out");
      out_chain_ = gs_orthogonal_chain(out, ko, c.layout);
      has_out_ = true;
      out_L_ = init_blocks(c, ko, out / ko, free_map).requires_grad_(true);
      out_R_ = init_blocks(c, ko, out / ko, free_map).requires_grad_(true);
    }
    if (c.scale) s_ = (c.init_weights ? torch::ones({out}) : 1 + 0.1 * torch::randn({out})).requires_grad_(true);
  }
  Method method() const override { return method_; }

 protected:
  Slots slots() override {
    Slots p{{"gsoft_L", &L_}, {"gsoft_R", &R_}};
    if (has_out_) {
      p.emplace_back("gsoft_out_L", &out_L_);
      p.emplace_back("gsoft_out_R", &out_R_);
    }
    if (s_.defined()) p.emplace_back("gsoft_s", &s_);
    return p;
  }
  std::vector<torch::Tensor> in_blocks() const override {
    return {functional::orthogonal_blocks(R_, map_, terms_), functional::orthogonal_blocks(L_, map_, terms_)};
  }
  std::vector<torch::Tensor> out_blocks() const override {
    return {functional::orthogonal_blocks(out_R_, map_, terms_), functional::orthogonal_blocks(out_L_, map_, terms_)};
  }
  torch::Tensor scale() const override { return s_; }
  bool out_blocks_orthogonal() const override {
    return map_ == Parametrization::Cayley || map_ == Parametrization::Exp;
  }

 private:
  Method method_;
  Parametrization map_;
  int64_t terms_;
  torch::Tensor L_, R_, out_L_, out_R_, s_;
};

// PEFT's OFT (>= 0.16): oft_R.weight (r, b(b-1)/2) holds the strict upper triangle U; Q = U - U^T.
// PEFT rotates inputs by R^T with R = (I - Q)(I + Q)^-1 (exact) or R ~ (I + Q)(I - Q)^-1
// (Neumann series). In gsoft's orientation, cayley(2U) = (I + Q)(I - Q)^-1 is the exact path's R^T
// and cayley_neumann(-2U) is the Neumann path's R^T.
class OFTAdapter : public RotationAdapter {
 public:
  OFTAdapter(const AdapterConfig& c, int64_t in, const std::string& name)
      : neumann_(c.use_cayley_neumann), terms_(c.neumann_terms) {
    const int64_t k = resolve_nblocks(c, in, name, "in");
    b_ = in / k;
    in_chain_ = GSChain({Permutation::identity(in), Permutation::identity(in)}, {{k, b_, b_}});
    const int64_t len = b_ * (b_ - 1) / 2;
    R_ = (c.init_weights ? torch::zeros({k, len}) : 0.1 * torch::randn({k, len})).requires_grad_(true);
    auto idx = torch::triu_indices(b_, b_, 1);
    flat_index_ = (idx[0] * b_ + idx[1]).contiguous();
  }
  Method method() const override { return Method::OFT; }

 protected:
  Slots slots() override { return {{"oft_R.weight", &R_}}; }
  std::vector<torch::Tensor> in_blocks() const override {
    const int64_t k = R_.size(0);
    auto U = torch::zeros({k, b_ * b_}, R_.options()).index_copy(1, flat_index_, R_);
    U = U.view({k, b_, b_});
    return {neumann_ ? functional::cayley_neumann(-2 * U, terms_) : functional::cayley(2 * U)};
  }

 private:
  bool neumann_;
  int64_t terms_;
  int64_t b_;
  torch::Tensor R_, flat_index_;
};

// PEFT's BOFT: boft_R (m, N, b, b), boft_s (out, 1); inputs rotated by R^T (see boft_chain).
class BOFTAdapter : public RotationAdapter {
 public:
  BOFTAdapter(const AdapterConfig& c, int64_t in, int64_t out, const std::string& name) {
    const int64_t k = resolve_nblocks(c, in, name, "in");
    const int64_t b = in / k, m = c.boft_n_butterfly_factor;
    in_chain_ = boft_chain(in, b, m);
    R_ = (c.init_weights ? torch::zeros({m, k, b, b}) : 0.1 * torch::randn({m, k, b, b})).requires_grad_(true);
    s_ = (c.init_weights ? torch::ones({out, 1}) : 1 + 0.1 * torch::randn({out, 1})).requires_grad_(true);
  }
  Method method() const override { return Method::BOFT; }

 protected:
  Slots slots() override { return {{"boft_R", &R_}, {"boft_s", &s_}}; }
  std::vector<torch::Tensor> in_blocks() const override {
    std::vector<torch::Tensor> blocks;
    for (int64_t i = R_.size(0) - 1; i >= 0; --i) blocks.push_back(functional::cayley(R_[i]));
    return blocks;
  }
  torch::Tensor scale() const override { return s_.view({-1}); }

 private:
  torch::Tensor R_, s_;
};

}  // namespace

std::shared_ptr<LinearAdapter> make_gsoft(const AdapterConfig& c, int64_t in, int64_t out, const std::string& name) {
  return std::make_shared<GSOFTAdapter>(c, in, out, name);
}
std::shared_ptr<LinearAdapter> make_oft(const AdapterConfig& c, int64_t in, int64_t, const std::string& name) {
  return std::make_shared<OFTAdapter>(c, in, name);
}
std::shared_ptr<LinearAdapter> make_boft(const AdapterConfig& c, int64_t in, int64_t out, const std::string& name) {
  return std::make_shared<BOFTAdapter>(c, in, out, name);
}

}  // namespace gsoft::adapters
