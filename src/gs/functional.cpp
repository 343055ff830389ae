#include "gsoft/gs/functional.h"

#include <ATen/Parallel.h>
#include <optional>
#include <tuple>
#include <torch/torch.h>

#include "gsoft/core/error.h"
#include "kernel_util.h"
#include "kernels.h"
#include "row_kernels.h"

namespace gsoft::functional {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void check_inputs(const GSChain& chain, const torch::Tensor& x,
                  const std::vector<torch::Tensor>& blocks, const char* op) {
  GSOFT_CHECK(x.defined() && x.dim() >= 1, op, ": x must have at least one dimension");
  GSOFT_CHECK(x.size(-1) == chain.in_features(), op, ": x has ", x.size(-1),
              " features in its last dimension, expected ", chain.in_features(), " (shape ",
              format_shape(x.sizes()), ")");
  chain.check_blocks(blocks, op);
  for (size_t i = 0; i < blocks.size(); ++i) {
    GSOFT_CHECK(blocks[i].scalar_type() == x.scalar_type(), op, ": blocks[", i, "] has dtype ",
                blocks[i].scalar_type(), " but x has dtype ", x.scalar_type());
    GSOFT_CHECK(blocks[i].device() == x.device(), op, ": blocks[", i, "] is on ",
                blocks[i].device(), " but x is on ", x.device());
  }
}

// The chain rides through autograd in a capsule, so backward sees exactly the forward's chain.
struct ChainHolder : torch::CustomClassHolder {
  explicit ChainHolder(GSChain c) : chain(std::move(c)) {}
  GSChain chain;
};

// y = A x through the fused kernel, for a contiguous (rows, in) x and contiguous blocks.
torch::Tensor kernel_forward(const GSChain& chain, const std::vector<torch::Tensor>& bs, const torch::Tensor& x2) {
  auto y = torch::empty({x2.size(0), chain.out_features()}, x2.options());
  kernels::ChainPlan plan(chain);
  AT_DISPATCH_FLOATING_TYPES(x2.scalar_type(), "gs_apply", [&] {
    std::vector<const scalar_t*> ptrs;
    for (const auto& b : bs) ptrs.push_back(b.data_ptr<scalar_t>());
    kernels::chain_forward<scalar_t>(plan, ptrs.data(), x2.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), x2.size(0));
  });
  return y;
}

// The gradient for x (undefined unless need_x) and for every block, through the fused kernel.
std::pair<torch::Tensor, std::vector<torch::Tensor>> kernel_backward(const GSChain& chain,
                                                                     const std::vector<torch::Tensor>& bs,
                                                                     const torch::Tensor& x2, const torch::Tensor& gy,
                                                                     bool need_x) {
  torch::Tensor gx = need_x ? torch::empty_like(x2) : torch::Tensor();
  std::vector<torch::Tensor> gbs;
  for (const auto& b : bs) gbs.push_back(torch::empty_like(b));
  kernels::ChainPlan plan(chain);
  AT_DISPATCH_FLOATING_TYPES(x2.scalar_type(), "gs_apply_backward", [&] {
    std::vector<const scalar_t*> ptrs;
    std::vector<scalar_t*> gptrs;
    for (const auto& b : bs) ptrs.push_back(b.data_ptr<scalar_t>());
    for (auto& g : gbs) gptrs.push_back(g.data_ptr<scalar_t>());
    kernels::chain_backward<scalar_t>(plan, ptrs.data(), x2.data_ptr<scalar_t>(), gy.data_ptr<scalar_t>(),
                                      need_x ? gx.data_ptr<scalar_t>() : nullptr, gptrs.data(), x2.size(0));
  });
  return {gx, gbs};
}

// Whether a float product on this chain runs on the row kernels (row_kernels.h).
bool row_path(const kernels::ChainPlan& plan, const torch::Tensor& x) {
  return x.scalar_type() == torch::kFloat32 && plan.row_block != 0 && kernels::row_kernels_active();
}

template <typename T>
std::vector<T*> data_ptrs(const std::vector<torch::Tensor>& ts) {
  std::vector<T*> ptrs;
  for (const auto& t : ts) ptrs.push_back(t.data_ptr<std::remove_const_t<T>>());
  return ptrs;
}

std::vector<torch::Tensor> contiguous_blocks(torch::TensorList blocks) {
  std::vector<torch::Tensor> bs;
  for (const auto& b : blocks) bs.push_back(b.contiguous());
  return bs;
}

class GSApplyFunction : public torch::autograd::Function<GSApplyFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::TensorList blocks,
                               c10::intrusive_ptr<ChainHolder> holder) {
    const auto& chain = holder->chain;
    auto x2 = x.reshape({-1, chain.in_features()}).contiguous();
    std::vector<torch::Tensor> bs = contiguous_blocks(blocks);
    auto out_shape = x.sizes().vec();
    out_shape.back() = chain.out_features();
    auto y = kernel_forward(chain, bs, x2);
    bs.insert(bs.begin(), x2);
    ctx->save_for_backward(bs);
    ctx->saved_data["x_shape"] = x.sizes().vec();
    ctx->saved_data["chain"] = c10::IValue::make_capsule(holder);
    return y.reshape(out_shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto holder = c10::static_intrusive_pointer_cast<ChainHolder>(ctx->saved_data["chain"].toCapsule());
    const auto& chain = holder->chain;
    auto saved = ctx->get_saved_variables();
    auto x2 = saved[0];
    std::vector<torch::Tensor> bs(saved.begin() + 1, saved.end());
    auto gy = grad_outputs[0].reshape({-1, chain.out_features()}).contiguous();
    const bool need_x = ctx->needs_input_grad(0);
    auto [gx, gbs] = kernel_backward(chain, bs, x2, gy, need_x);
    variable_list out;
    out.push_back(need_x ? gx.reshape(ctx->saved_data["x_shape"].toIntVector()) : torch::Tensor());
    for (auto& g : gbs) out.push_back(g);
    out.push_back(torch::Tensor());  // holder
    return out;
  }
};

// Gradients of out = s * (A x) + b (A orthogonal) from out and g = d out, recovering A x and x:
// for x (when need_x), s, b (when asked) and every block.
struct ScaledGrads {
  torch::Tensor gx, gs, gb;
  std::vector<torch::Tensor> gblocks;
};

ScaledGrads scaled_backward(const GSChain& chain, const std::vector<torch::Tensor>& bs, const torch::Tensor& out,
                            const torch::Tensor& s, const torch::Tensor& b, const torch::Tensor& g, bool need_x,
                            bool need_s, bool need_b) {
  ScaledGrads r;
  const kernels::ChainPlan plan(chain);
  if (row_path(plan, out) && s.scalar_type() == out.scalar_type() && b.scalar_type() == out.scalar_type()) {
    // One pass from out and g: no temporaries the size of the layer besides gx.
    const auto sc = s.contiguous(), bc = b.contiguous();
    if (need_x) r.gx = torch::empty_like(out);
    if (need_s) r.gs = torch::empty_like(sc);
    if (need_b) r.gb = torch::empty_like(bc);
    for (const auto& blk : bs) r.gblocks.push_back(torch::empty_like(blk));
    kernels::row_scaled_backward(plan, data_ptrs<const float>(bs).data(), out.data_ptr<float>(), sc.data_ptr<float>(),
                                 bc.data_ptr<float>(), g.data_ptr<float>(), need_x ? r.gx.data_ptr<float>() : nullptr,
                                 data_ptrs<float>(r.gblocks).data(), need_s ? r.gs.data_ptr<float>() : nullptr,
                                 need_b ? r.gb.data_ptr<float>() : nullptr, out.size(0));
    return r;
  }
  // Temporaries of the layer's size are what the peak of a backward is made of: y is formed in
  // place and released once x and s's gradient have it.
  auto y = torch::sub(out, b).div_(s).contiguous();
  if (need_s) r.gs = column_dots(g, y);
  // x = A^T y: the transposed chain with the blocks transposed, in reverse order.
  std::vector<torch::Tensor> tbs;
  for (auto it = bs.rbegin(); it != bs.rend(); ++it) tbs.push_back(it->transpose(1, 2).contiguous());
  const auto x2 = kernel_forward(chain.transposed(), tbs, y);
  y = torch::Tensor();
  std::tie(r.gx, r.gblocks) = kernel_backward(chain, bs, x2, (g * s).contiguous(), need_x);
  if (need_b) r.gb = g.sum(0);
  return r;
}

// out = s * (A x) + b for an orthogonal A, keeping {out, s, b} and the blocks instead of x: the
// backward recovers y = (out - b) / s and x = A^T y with one more pass of the kernel, so the rotation
// costs no activation memory beyond the output, which the next op keeps anyway.
class GSApplyScaledFunction : public torch::autograd::Function<GSApplyScaledFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor s, torch::Tensor b,
                               torch::TensorList blocks, c10::intrusive_ptr<ChainHolder> holder) {
    const auto& chain = holder->chain;
    const auto x2 = x.reshape({-1, chain.in_features()}).contiguous();
    std::vector<torch::Tensor> bs = contiguous_blocks(blocks);
    const kernels::ChainPlan plan(chain);
    torch::Tensor out;
    if (row_path(plan, x2) && s.scalar_type() == x2.scalar_type() && b.scalar_type() == x2.scalar_type()) {
      // s and b ride in the product's own pass.
      out = torch::empty({x2.size(0), chain.out_features()}, x2.options());
      const auto sc = s.contiguous(), bc = b.contiguous();
      kernels::row_forward(plan, data_ptrs<const float>(bs).data(), x2.data_ptr<float>(), out.data_ptr<float>(),
                           x2.size(0), sc.data_ptr<float>(), bc.data_ptr<float>());
    } else {
      out = torch::addcmul(b, kernel_forward(chain, bs, x2), s);
    }
    bs.insert(bs.begin(), {out, s, b});
    ctx->save_for_backward(bs);
    ctx->saved_data["x_shape"] = x.sizes().vec();
    ctx->saved_data["chain"] = c10::IValue::make_capsule(holder);
    auto out_shape = x.sizes().vec();
    out_shape.back() = chain.out_features();
    return out.view(out_shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto holder = c10::static_intrusive_pointer_cast<ChainHolder>(ctx->saved_data["chain"].toCapsule());
    const auto& chain = holder->chain;
    const auto saved = ctx->get_saved_variables();
    const std::vector<torch::Tensor> bs(saved.begin() + 3, saved.end());
    const auto g = grad_outputs[0].reshape({-1, chain.out_features()}).contiguous();
    auto r = scaled_backward(chain, bs, saved[0], saved[1], saved[2], g, ctx->needs_input_grad(0),
                             ctx->needs_input_grad(1), ctx->needs_input_grad(2));
    variable_list grads{r.gx.defined() ? r.gx.reshape(ctx->saved_data["x_shape"].toIntVector()) : torch::Tensor(),
                        r.gs, r.gb};
    for (auto& gblk : r.gblocks) grads.push_back(gblk);
    grads.push_back(torch::Tensor());  // holder
    return grads;
  }
};

// The chains of gs_linear: A on the input side, and optionally an orthogonal A_out on the output side.
struct LinearHolder : torch::CustomClassHolder {
  LinearHolder(GSChain in_, std::optional<GSChain> out_) : in(std::move(in_)), out(std::move(out_)) {}
  GSChain in;
  std::optional<GSChain> out;
};

// out = s * (A_out W A x) + b through the merged weight (A_out omitted when there is none); see
// gs_linear in functional.h. The bias rides in a list (empty without one): an undefined tensor
// cannot be an autograd input.
class GSLinearFunction : public torch::autograd::Function<GSLinearFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor weight, torch::Tensor s,
                               torch::TensorList bias, torch::TensorList blocks, torch::TensorList out_blocks,
                               c10::intrusive_ptr<LinearHolder> holder) {
    const auto& chain = holder->in;
    const auto x2 = x.reshape({-1, chain.in_features()}).contiguous();
    const std::vector<torch::Tensor> bs = contiguous_blocks(blocks), obs = contiguous_blocks(out_blocks);
    // W A: A^T applied to W's rows, i.e. the transposed chain with transposed blocks in reverse.
    std::vector<torch::Tensor> tbs;
    for (auto it = bs.rbegin(); it != bs.rend(); ++it) tbs.push_back(it->transpose(1, 2).contiguous());
    auto merged = kernel_forward(chain.transposed(), tbs, weight.contiguous());
    if (holder->out) merged = kernel_forward(*holder->out, obs, merged.t().contiguous()).t();  // A_out (W A)
    const auto out = scaled_mm(x2, merged, s, bias.empty() ? torch::Tensor() : bias[0]);
    variable_list saved{x2, out, weight, s};
    if (!bias.empty()) saved.push_back(bias[0]);
    saved.insert(saved.end(), bs.begin(), bs.end());
    saved.insert(saved.end(), obs.begin(), obs.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["bias"] = !bias.empty();
    ctx->saved_data["x_shape"] = x.sizes().vec();
    ctx->saved_data["chains"] = c10::IValue::make_capsule(holder);
    auto shape = x.sizes().vec();
    shape.back() = weight.size(0);
    return out.view(shape);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    auto holder = c10::static_intrusive_pointer_cast<LinearHolder>(ctx->saved_data["chains"].toCapsule());
    const bool has_bias = ctx->saved_data["bias"].toBool();
    const auto saved = ctx->get_saved_variables();
    const auto &x2 = saved[0], &out = saved[1], &w = saved[2], &s = saved[3];
    const torch::Tensor b = has_bias ? saved[4] : torch::Tensor();
    const auto first_block = saved.begin() + (has_bias ? 5 : 4);
    const auto first_out_block = first_block + static_cast<int64_t>(holder->in.num_factors());
    const std::vector<torch::Tensor> bs(first_block, first_out_block), obs(first_out_block, saved.end());
    const auto g2 = grad_outputs[0].reshape({-1, out.size(1)}).contiguous();
    const int64_t bias_index = 3, blocks_index = has_bias ? 4 : 3;
    const bool need_s = ctx->needs_input_grad(2), need_b = has_bias && ctx->needs_input_grad(bias_index);
    torch::Tensor gh, gs, gb;
    std::vector<torch::Tensor> gobs;
    if (holder->out) {
      // A_out's side as gs_apply_scaled's backward, from out: the gradient for W A x, A_out's
      // blocks, s and b. Then through W to A x.
      auto r = scaled_backward(*holder->out, obs, out, s, has_bias ? b : torch::zeros_like(s), g2, true, need_s, need_b);
      gh = torch::mm(r.gx, w);
      gs = r.gs, gb = r.gb, gobs = std::move(r.gblocks);
    } else {
      gh = scaled_mm_input_grad(g2, w, s);
      if (need_s || need_b) gs = column_dots(g2, out, b, need_b ? &gb : nullptr) / s;
    }
    // One kernel pass over x for x's and A's blocks' gradients.
    const bool need_x = ctx->needs_input_grad(0);
    auto [gx, gbs] = kernel_backward(holder->in, bs, x2, gh, need_x);
    variable_list grads{need_x ? gx.reshape(ctx->saved_data["x_shape"].toIntVector()) : torch::Tensor(),
                        torch::Tensor(),  // W is frozen
                        need_s ? gs : torch::Tensor()};
    if (has_bias) grads.push_back(need_b ? gb : torch::Tensor());
    gbs.insert(gbs.end(), gobs.begin(), gobs.end());
    for (size_t i = 0; i < gbs.size(); ++i)
      grads.push_back(ctx->needs_input_grad(blocks_index + static_cast<int64_t>(i)) ? gbs[i] : torch::Tensor());
    grads.push_back(torch::Tensor());  // holder
    return grads;
  }
};

// Whether scaled_mm folds s into w's rows (a pass over w) rather than the product's (a pass over
// x's rows times w's rows): when x has at least as many rows as w has columns.
bool scale_on_weight(const torch::Tensor& x, const torch::Tensor& w) { return x.size(0) >= w.size(1); }

}  // namespace

torch::Tensor scaled_mm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& s, const torch::Tensor& bias) {
  if (scale_on_weight(x, w)) {
    const auto ws = (w * s.unsqueeze(1)).t();
    return bias.defined() ? torch::addmm(bias, x, ws) : torch::mm(x, ws);
  }
  auto out = torch::mm(x, w.t());
  return bias.defined() ? at::addcmul_out(out, bias, out, s) : out.mul_(s);  // in place, one pass
}

torch::Tensor scaled_mm_input_grad(const torch::Tensor& g, const torch::Tensor& w, const torch::Tensor& s) {
  return scale_on_weight(g, w) ? torch::mm(g, w * s.unsqueeze(1)) : torch::mm(g * s, w);
}

torch::Tensor column_dots(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& shift,
                          torch::Tensor* sums) {
  GSOFT_CHECK(a.dim() == 2 && a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type(),
              "column_dots: expected two (rows, n) tensors of one dtype, got ", format_shape(a.sizes()), " and ",
              format_shape(b.sizes()));
  const int64_t rows = a.size(0), n = a.size(1);
  GSOFT_CHECK(!shift.defined() || (shift.dim() == 1 && shift.size(0) == n && shift.scalar_type() == a.scalar_type()),
              "column_dots: shift must have shape (", n, ") and dtype ", a.scalar_type(), ", got ",
              shift.defined() ? format_shape(shift.sizes()) : std::string("undefined"));
  const auto ac = a.contiguous(), bc = b.contiguous();
  const auto sc = shift.defined() ? shift.contiguous() : torch::zeros({n}, ac.options());
  // Threads take fixed chunks of whole rows, so both inputs stream sequentially, and each chunk
  // keeps its own partial sums, added in chunk order: the result depends on the row count only,
  // not on the threads or on which thread took which chunk.
  const int64_t chunk_rows = std::max<int64_t>(256, (rows + 63) / 64);
  const int64_t nchunks = std::max<int64_t>(1, (rows + chunk_rows - 1) / chunk_rows);
  const int64_t width = sums ? 2 * n : n;
  auto partials = torch::zeros({nchunks, width}, ac.options());
  AT_DISPATCH_FLOATING_TYPES(ac.scalar_type(), "column_dots", [&] {
    const scalar_t* pa = ac.data_ptr<scalar_t>();
    const scalar_t* pb = bc.data_ptr<scalar_t>();
    const scalar_t* ps = sc.data_ptr<scalar_t>();
    scalar_t* pp = partials.data_ptr<scalar_t>();
    kernels::for_each_item(nchunks, [] { return 0; }, [&](int64_t c, int) {
      scalar_t* __restrict pd = pp + c * width;
      scalar_t* __restrict pe = sums ? pd + n : nullptr;
      for (int64_t r = c * chunk_rows, end = std::min(rows, r + chunk_rows); r < end; ++r) {
        const scalar_t* __restrict ar = pa + r * n;
        const scalar_t* __restrict br = pb + r * n;
        for (int64_t j = 0; j < n; ++j) pd[j] += ar[j] * (br[j] - ps[j]);
        if (pe)
          for (int64_t j = 0; j < n; ++j) pe[j] += ar[j];
      }
    });
    for (int64_t c = 1; c < nchunks; ++c)
      for (int64_t j = 0; j < width; ++j) pp[j] += pp[c * width + j];
  });
  const auto total = partials[0];
  auto d = total.slice(0, 0, n).contiguous();
  auto e = sums ? total.slice(0, n, 2 * n).contiguous() : torch::Tensor();
  if (sums) *sums = e;
  return d;
}

torch::Tensor block_diag(const torch::Tensor& blocks) {
  GSOFT_CHECK(blocks.dim() == 3, "block_diag: expected a (nblocks, rows, cols) tensor, got shape ",
              format_shape(blocks.sizes()));
  return torch::block_diag(blocks.unbind(0));
}

torch::Tensor gs_apply_unfused(const GSChain& chain, const torch::Tensor& x,
                               const std::vector<torch::Tensor>& blocks) {
  check_inputs(chain, x, blocks, "gs_apply_unfused");
  auto h = x;
  const auto& perms = chain.perms();
  for (size_t s = 0; s < blocks.size(); ++s) {
    const auto& f = chain.factors()[s];
    h = perms[s].apply(h);
    auto shape = h.sizes().vec();
    shape.back() = f.nblocks;
    shape.push_back(f.block_cols);
    // (..., k, c) x (k, r, c)^T -> (..., k, r)
    auto hb = h.reshape(shape).unsqueeze(-1);                      // (..., k, c, 1)
    auto out = torch::matmul(blocks[s], hb).squeeze(-1);           // (..., k, r)
    shape.pop_back();
    shape.back() = f.rows();
    h = out.reshape(shape);
  }
  return perms.back().apply(h);
}

torch::Tensor gs_apply(const GSChain& chain, const torch::Tensor& x,
                       const std::vector<torch::Tensor>& blocks) {
  check_inputs(chain, x, blocks, "gs_apply");
  if (!x.device().is_cpu()) return gs_apply_unfused(chain, x, blocks);
  GSOFT_CHECK(x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kFloat64,
              "gs_apply: expected float32 or float64 on CPU, got ", x.scalar_type());
  auto holder = c10::make_intrusive<ChainHolder>(chain);
  return GSApplyFunction::apply(x, torch::TensorList(blocks), holder);
}

torch::Tensor gs_apply_scaled(const GSChain& chain, const torch::Tensor& x, const std::vector<torch::Tensor>& blocks,
                              const torch::Tensor& s, const torch::Tensor& bias) {
  check_inputs(chain, x, blocks, "gs_apply_scaled");
  GSOFT_CHECK(chain.in_features() == chain.out_features(), "gs_apply_scaled: the chain must be square, got ",
              chain.out_features(), " x ", chain.in_features());
  const int64_t n = chain.out_features();
  GSOFT_CHECK(s.defined() && s.dim() == 1 && s.size(0) == n, "gs_apply_scaled: s must have shape (", n, "), got ",
              s.defined() ? format_shape(s.sizes()) : std::string("undefined"));
  GSOFT_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == n), "gs_apply_scaled: bias must have shape (", n,
              "), got ", bias.defined() ? format_shape(bias.sizes()) : std::string("undefined"));
  const auto b = bias.defined() ? bias : torch::zeros({n}, s.options().requires_grad(false));
  if (!x.device().is_cpu()) return torch::addcmul(b, gs_apply_unfused(chain, x, blocks), s);
  auto holder = c10::make_intrusive<ChainHolder>(chain);
  return GSApplyScaledFunction::apply(x, s, b, torch::TensorList(blocks), holder);
}

torch::Tensor gs_linear(const GSChain& chain, const torch::Tensor& x, const std::vector<torch::Tensor>& blocks,
                        const torch::Tensor& weight, const torch::Tensor& s, const torch::Tensor& bias,
                        const GSChain* out_chain, const std::vector<torch::Tensor>& out_blocks) {
  check_inputs(chain, x, blocks, "gs_linear");
  GSOFT_CHECK(x.device().is_cpu() && (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kFloat64),
              "gs_linear: expected float32 or float64 on CPU, got ", x.scalar_type(), " on ", x.device());
  GSOFT_CHECK(weight.dim() == 2 && weight.size(1) == chain.out_features() && weight.scalar_type() == x.scalar_type(),
              "gs_linear: weight must be (out, ", chain.out_features(), ") of dtype ", x.scalar_type(), ", got ",
              format_shape(weight.sizes()), " ", weight.scalar_type());
  const int64_t out = weight.size(0);
  if (out_chain) {
    GSOFT_CHECK(out_chain->in_features() == out && out_chain->out_features() == out,
                "gs_linear: the output chain must be ", out, " x ", out, " (the weight's rows), got ",
                out_chain->out_features(), " x ", out_chain->in_features());
    out_chain->check_blocks(out_blocks, "gs_linear (output side)");
    for (const auto& ob : out_blocks)
      GSOFT_CHECK(ob.scalar_type() == x.scalar_type(), "gs_linear: output blocks have dtype ", ob.scalar_type(),
                  " but x has dtype ", x.scalar_type());
  } else {
    GSOFT_CHECK(out_blocks.empty(), "gs_linear: ", out_blocks.size(), " output blocks given without an output chain");
  }
  GSOFT_CHECK(s.dim() == 1 && s.size(0) == out && s.scalar_type() == x.scalar_type(), "gs_linear: s must be (", out,
              ") of dtype ", x.scalar_type(), ", got ", format_shape(s.sizes()), " ", s.scalar_type());
  GSOFT_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == out && bias.scalar_type() == x.scalar_type()),
              "gs_linear: bias must be (", out, ") of dtype ", x.scalar_type(), " or undefined, got ",
              format_shape(bias.sizes()), " ", bias.scalar_type());
  auto holder = c10::make_intrusive<LinearHolder>(chain, out_chain ? std::optional<GSChain>(*out_chain) : std::nullopt);
  const std::vector<torch::Tensor> bias_list = bias.defined() ? std::vector<torch::Tensor>{bias} : std::vector<torch::Tensor>{};
  return GSLinearFunction::apply(x, weight, s, torch::TensorList(bias_list), torch::TensorList(blocks),
                                 torch::TensorList(out_blocks), holder);
}

torch::Tensor gs_apply_transpose(const GSChain& chain, const torch::Tensor& x,
                                 const std::vector<torch::Tensor>& blocks) {
  chain.check_blocks(blocks, "gs_apply_transpose");
  std::vector<torch::Tensor> tb;
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) tb.push_back(it->transpose(1, 2));
  return gs_apply(chain.transposed(), x, tb);
}

torch::Tensor gs_dense(const GSChain& chain, const std::vector<torch::Tensor>& blocks) {
  chain.check_blocks(blocks, "gs_dense");
  GSOFT_CHECK(!blocks.empty(), "gs_dense: no blocks");
  // Rows of A^T = A applied to the identity's rows; transpose back.
  auto eye = torch::eye(chain.in_features(), blocks[0].options());
  return gs_apply(chain, eye, blocks).t();
}

void set_row_kernels(bool enabled) { kernels::set_row_kernels_enabled(enabled); }

bool row_kernels() { return kernels::row_kernels_active(); }

bool row_kernels(const GSChain& chain) { return row_kernels() && kernels::official_row_block(chain) != 0; }

}  // namespace gsoft::functional
