#include "gsoft/diffusion/unet.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "gsoft/adapters/adaptable_conv2d.h"
#include "gsoft/adapters/adaptable_linear.h"
#include "gsoft/core/error.h"
#include "io/file_util.h"

namespace gsoft::diffusion {
namespace F = torch::nn::functional;
using torch::Tensor;

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// An int or a list of ints in a diffusers config, as one value per block.
std::vector<int64_t> per_block(const nlohmann::json& j, const char* key, std::vector<int64_t> fallback, size_t blocks,
                               const std::string& origin) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  const auto& v = j[key];
  if (v.is_number_integer()) return std::vector<int64_t>(blocks, io::json_field<int64_t>(j, key, 0, origin));
  if (!v.is_array()) throw std::runtime_error(origin + ": field '" + std::string(key) + "' must be an integer or a list, found " + v.dump());
  std::vector<int64_t> out;
  for (const auto& x : v) {
    if (!x.is_number_integer() || x.get<int64_t>() < 1 || x.get<int64_t>() > (int64_t{1} << 20))
      throw std::runtime_error(origin + ": field '" + std::string(key) + "' holds " + x.dump() + ", expected positive integers");
    out.push_back(x.get<int64_t>());
  }
  return out;
}

torch::nn::GroupNorm group_norm(int64_t groups, int64_t channels, double eps) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(eps).affine(true));
}

AdaptableConv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1) {
  return AdaptableConv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2));
}

AdaptableLinear linear(int64_t in, int64_t out, bool bias = true) {
  return AdaptableLinear(torch::nn::LinearOptions(in, out).bias(bias));
}

// diffusers' ResnetBlock2D ("default" time embedding norm, output scale 1, SiLU).
struct ResnetBlockImpl : torch::nn::Module {
  ResnetBlockImpl(int64_t in, int64_t out, int64_t temb, int64_t groups, double eps) {
    norm1 = register_module("norm1", group_norm(groups, in, eps));
    conv1 = register_module("conv1", conv(in, out, 3));
    time_emb_proj = register_module("time_emb_proj", linear(temb, out));
    norm2 = register_module("norm2", group_norm(groups, out, eps));
    conv2 = register_module("conv2", conv(out, out, 3));
    if (in != out) conv_shortcut = register_module("conv_shortcut", conv(in, out, 1));
  }
  Tensor forward(const Tensor& x, const Tensor& temb) {
    Tensor h = conv1(F::silu(norm1(x)));
    h = h + time_emb_proj(F::silu(temb)).unsqueeze(-1).unsqueeze(-1);
    h = conv2(F::silu(norm2(h)));
    return (conv_shortcut ? conv_shortcut(x) : x) + h;
  }
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  AdaptableConv2d conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
  AdaptableLinear time_emb_proj{nullptr};
};
TORCH_MODULE(ResnetBlock);

// diffusers' Attention with the default processor: no bias on q/k/v, to_out = [Linear, Dropout].
struct AttentionImpl : torch::nn::Module {
  AttentionImpl(int64_t query_dim, int64_t context_dim, int64_t heads_, int64_t head_dim) : heads(heads_) {
    const int64_t inner = heads * head_dim;
    to_q = register_module("to_q", linear(query_dim, inner, false));
    to_k = register_module("to_k", linear(context_dim, inner, false));
    to_v = register_module("to_v", linear(context_dim, inner, false));
    to_out = register_module("to_out", torch::nn::ModuleList());
    out_proj = linear(inner, query_dim);
    to_out->push_back(out_proj);
    to_out->push_back(torch::nn::Dropout(0.0));
    scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  }
  Tensor forward(const Tensor& x, const Tensor& context) {
    const int64_t B = x.size(0), N = x.size(1);
    auto split = [&](const Tensor& t) { return t.view({B, t.size(1), heads, -1}).transpose(1, 2); };
    const Tensor q = split(to_q(x)), k = split(to_k(context)), v = split(to_v(context));
    const Tensor attn = torch::softmax(torch::matmul(q, k.transpose(-1, -2)) * scale, -1);
    return out_proj(torch::matmul(attn, v).transpose(1, 2).reshape({B, N, -1}));
  }
  int64_t heads;
  double scale;
  AdaptableLinear to_q{nullptr}, to_k{nullptr}, to_v{nullptr}, out_proj{nullptr};
  torch::nn::ModuleList to_out{nullptr};
};
TORCH_MODULE(Attention);

// BasicTransformerBlock: self-attention, cross-attention and a GEGLU feed-forward, each pre-norm
// with a residual.
struct TransformerBlockImpl : torch::nn::Module {
  TransformerBlockImpl(int64_t dim, int64_t context_dim, int64_t heads, int64_t head_dim) {
    auto ln = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5)); };
    norm1 = register_module("norm1", ln());
    attn1 = register_module("attn1", Attention(dim, dim, heads, head_dim));
    norm2 = register_module("norm2", ln());
    attn2 = register_module("attn2", Attention(dim, context_dim, heads, head_dim));
    norm3 = register_module("norm3", ln());
    // ff.net = [GEGLU(proj: dim -> 2 * 4dim), Dropout, Linear(4dim -> dim)]
    auto net = torch::nn::ModuleList();
    auto geglu = std::make_shared<torch::nn::Module>();
    ff_proj = geglu->register_module("proj", linear(dim, dim * 8));
    ff_out = linear(dim * 4, dim);
    net->push_back(geglu);
    net->push_back(torch::nn::Dropout(0.0));
    net->push_back(ff_out);
    auto ff = std::make_shared<torch::nn::Module>();
    ff->register_module("net", net);
    register_module("ff", ff);
  }
  Tensor forward(Tensor h, const Tensor& context) {
    Tensor n = norm1(h);
    h = attn1(n, n) + h;
    h = attn2(norm2(h), context) + h;
    const auto gates = ff_proj(norm3(h)).chunk(2, -1);
    return ff_out(gates[0] * F::gelu(gates[1])) + h;
  }
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Attention attn1{nullptr}, attn2{nullptr};
  AdaptableLinear ff_proj{nullptr}, ff_out{nullptr};
};
TORCH_MODULE(TransformerBlock);

// Transformer2DModel on continuous input: GroupNorm (eps 1e-6), proj_in, the blocks over the H*W
// positions, proj_out, plus the input.
struct Transformer2DImpl : torch::nn::Module {
  Transformer2DImpl(int64_t channels, int64_t heads, int64_t context_dim, int64_t layers, int64_t groups, bool linear_proj)
      : linear_projection(linear_proj) {
    norm = register_module("norm", group_norm(groups, channels, 1e-6));
    if (linear_projection) {
      proj_in_linear = register_module("proj_in", linear(channels, channels));
    } else {
      proj_in_conv = register_module("proj_in", conv(channels, channels, 1));
    }
    blocks = register_module("transformer_blocks", torch::nn::ModuleList());
    for (int64_t i = 0; i < layers; ++i) {
      typed.push_back(TransformerBlock(channels, context_dim, heads, channels / heads));
      blocks->push_back(typed.back());
    }
    if (linear_projection) {
      proj_out_linear = register_module("proj_out", linear(channels, channels));
    } else {
      proj_out_conv = register_module("proj_out", conv(channels, channels, 1));
    }
  }
  Tensor forward(const Tensor& x, const Tensor& context) {
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    Tensor h = norm(x);
    if (!linear_projection) h = proj_in_conv(h);
    h = h.permute({0, 2, 3, 1}).reshape({B, H * W, C});
    if (linear_projection) h = proj_in_linear(h);
    for (auto& b : typed) h = b(h, context);
    if (linear_projection) h = proj_out_linear(h);
    h = h.reshape({B, H, W, C}).permute({0, 3, 1, 2});
    if (!linear_projection) h = proj_out_conv(h.contiguous());
    return h + x;
  }
  bool linear_projection;
  torch::nn::GroupNorm norm{nullptr};
  AdaptableConv2d proj_in_conv{nullptr}, proj_out_conv{nullptr};
  AdaptableLinear proj_in_linear{nullptr}, proj_out_linear{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  std::vector<TransformerBlock> typed;
};
TORCH_MODULE(Transformer2D);

// A module that holds one convolution named "conv" (Downsample2D, Upsample2D).
struct Resample : torch::nn::Module {
  Resample(int64_t channels, bool down) : down_(down) {
    conv_ = register_module("conv", conv(channels, channels, 3, down ? 2 : 1));
  }
  Tensor forward(const Tensor& x) {
    if (down_) return conv_(x);
    return conv_(F::interpolate(x, F::InterpolateFuncOptions()
                                       .scale_factor(std::vector<double>{2.0, 2.0})
                                       .mode(torch::kNearest)));
  }
  bool down_;
  AdaptableConv2d conv_{nullptr};
};

}  // namespace

// One block of the UNet: a down block (resnets with optional attentions, then a down-sampler),
// the mid block (resnet, then attention and resnet pairs) or an up block (resnets fed the skip
// connections, optional attentions, an up-sampler).
class UNetStage : public torch::nn::Module {
 public:
  enum class Kind { Down, Mid, Up };

  UNetStage(Kind kind, const UNetConfig& c, int64_t layers, int64_t in, int64_t out, int64_t prev_out, bool attention,
            int64_t heads, bool resample)
      : kind_(kind) {
    auto resnets = register_module("resnets", torch::nn::ModuleList());
    auto add_resnet = [&](int64_t rin, int64_t rout) {
      resnets_.push_back(ResnetBlock(rin, rout, c.time_embed_dim(), c.norm_num_groups, c.norm_eps));
      resnets->push_back(resnets_.back());
    };
    torch::nn::ModuleList attentions{nullptr};
    if (attention) attentions = register_module("attentions", torch::nn::ModuleList());
    auto add_attention = [&](int64_t channels) {
      attentions_.push_back(Transformer2D(channels, heads, c.cross_attention_dim, c.transformer_layers_per_block,
                                          c.norm_num_groups, c.use_linear_projection));
      attentions->push_back(attentions_.back());
    };
    if (kind == Kind::Mid) {
      add_resnet(in, in);
      for (int64_t j = 0; j < layers; ++j) {
        add_attention(in);
        add_resnet(in, in);
      }
      return;
    }
    for (int64_t j = 0; j < layers; ++j) {
      if (kind == Kind::Down) {
        add_resnet(j == 0 ? in : out, out);
      } else {
        const int64_t skip = j == layers - 1 ? in : out;
        add_resnet((j == 0 ? prev_out : out) + skip, out);
      }
      if (attention) add_attention(out);
    }
    if (resample) {
      resample_ = std::make_shared<Resample>(out, kind == Kind::Down);
      auto list = register_module(kind == Kind::Down ? "downsamplers" : "upsamplers", torch::nn::ModuleList());
      list->push_back(resample_);
    }
  }

  size_t num_resnets() const { return resnets_.size(); }

  // Down blocks push every output onto `skips`; up blocks take theirs from its end.
  Tensor forward(Tensor h, const Tensor& temb, const Tensor& context, std::vector<Tensor>& skips) {
    if (kind_ == Kind::Mid) {
      h = resnets_[0](h, temb);
      for (size_t j = 0; j < attentions_.size(); ++j) h = resnets_[j + 1](attentions_[j](h, context), temb);
      return h;
    }
    for (size_t j = 0; j < resnets_.size(); ++j) {
      if (kind_ == Kind::Up) {
        h = torch::cat({h, skips.back()}, 1);
        skips.pop_back();
      }
      h = resnets_[j](h, temb);
      if (!attentions_.empty()) h = attentions_[j](h, context);
      if (kind_ == Kind::Down) skips.push_back(h);
    }
    if (resample_) {
      h = resample_->forward(h);
      if (kind_ == Kind::Down) skips.push_back(h);
    }
    return h;
  }

 private:
  Kind kind_;
  std::vector<ResnetBlock> resnets_;
  std::vector<Transformer2D> attentions_;
  std::shared_ptr<Resample> resample_;
};

const std::vector<std::string>& supported_down_block_types() {
  static const std::vector<std::string> v{"CrossAttnDownBlock2D", "DownBlock2D"};
  return v;
}
const std::vector<std::string>& supported_up_block_types() {
  static const std::vector<std::string> v{"CrossAttnUpBlock2D", "UpBlock2D"};
  return v;
}

UNetConfig UNetConfig::from_json(const std::string& text, const std::string& origin) {
  const nlohmann::json j = io::parse_json(text, origin);
  if (!j.is_object()) throw std::runtime_error(origin + ": expected a JSON object");
  UNetConfig c;
  const std::string cls = io::json_field<std::string>(j, "_class_name", "UNet2DConditionModel", origin);
  if (cls != "UNet2DConditionModel")
    throw std::runtime_error(origin + ": _class_name is '" + cls + "', expected UNet2DConditionModel");
  c.in_channels = io::json_field<int64_t>(j, "in_channels", c.in_channels, origin);
  c.out_channels = io::json_field<int64_t>(j, "out_channels", c.out_channels, origin);
  c.sample_size = io::json_field<int64_t>(j, "sample_size", c.sample_size, origin);
  if (j.contains("block_out_channels")) c.block_out_channels = per_block(j, "block_out_channels", {}, 0, origin);
  c.down_block_types = io::json_field<std::vector<std::string>>(j, "down_block_types", c.down_block_types, origin);
  c.up_block_types = io::json_field<std::vector<std::string>>(j, "up_block_types", c.up_block_types, origin);
  const size_t n = c.block_out_channels.size();
  c.layers_per_block = per_block(j, "layers_per_block", std::vector<int64_t>(n, 2), n, origin);
  const auto heads_default = per_block(j, "attention_head_dim", std::vector<int64_t>(n, 8), n, origin);
  c.num_attention_heads = per_block(j, "num_attention_heads", heads_default, n, origin);
  if (j.contains("cross_attention_dim") && j["cross_attention_dim"].is_array())
    throw std::runtime_error(origin + ": a per-block cross_attention_dim is not supported; give one integer");
  c.cross_attention_dim = io::json_field<int64_t>(j, "cross_attention_dim", c.cross_attention_dim, origin);
  if (j.contains("transformer_layers_per_block") && j["transformer_layers_per_block"].is_array())
    throw std::runtime_error(origin + ": a per-block transformer_layers_per_block is not supported; give one integer");
  c.transformer_layers_per_block = io::json_field<int64_t>(j, "transformer_layers_per_block", 1, origin);
  c.norm_num_groups = io::json_field<int64_t>(j, "norm_num_groups", c.norm_num_groups, origin);
  c.norm_eps = io::json_field<double>(j, "norm_eps", c.norm_eps, origin);
  c.use_linear_projection = io::json_field<bool>(j, "use_linear_projection", false, origin);
  c.flip_sin_to_cos = io::json_field<bool>(j, "flip_sin_to_cos", true, origin);
  c.freq_shift = io::json_field<double>(j, "freq_shift", 0, origin);

  // Options that change the computation but that this implementation does not have.
  auto require = [&](const char* key, const nlohmann::json& expected) {
    if (j.contains(key) && !j[key].is_null() && j[key] != expected)
      throw std::runtime_error(origin + ": " + key + " = " + j[key].dump() + " is not supported (only " + expected.dump() + ")");
  };
  require("act_fn", "silu");
  require("center_input_sample", false);
  require("downsample_padding", 1);
  require("mid_block_scale_factor", 1);
  require("mid_block_type", "UNetMidBlock2DCrossAttn");
  require("resnet_time_scale_shift", "default");
  require("time_embedding_type", "positional");
  require("only_cross_attention", false);
  require("dual_cross_attention", false);
  require("upcast_attention", false);
  for (const char* k : {"class_embed_type", "addition_embed_type", "encoder_hid_dim", "time_cond_proj_dim"})
    if (j.contains(k) && !j[k].is_null()) throw std::runtime_error(origin + ": " + k + " is not supported (only null)");
  for (const auto& t : c.down_block_types)
    if (std::find(supported_down_block_types().begin(), supported_down_block_types().end(), t) == supported_down_block_types().end())
      throw std::runtime_error(origin + ": down block type '" + t + "' is not supported (supported: " +
                               join(supported_down_block_types()) + ")");
  for (const auto& t : c.up_block_types)
    if (std::find(supported_up_block_types().begin(), supported_up_block_types().end(), t) == supported_up_block_types().end())
      throw std::runtime_error(origin + ": up block type '" + t + "' is not supported (supported: " +
                               join(supported_up_block_types()) + ")");
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(origin + ": " + e.what());
  }
  return c;
}

nlohmann::json UNetConfig::to_json() const {
  return {{"_class_name", "UNet2DConditionModel"},
          {"_diffusers_version", "0.21.0"},
          {"act_fn", "silu"},
          {"attention_head_dim", num_attention_heads},
          {"num_attention_heads", nullptr},
          {"block_out_channels", block_out_channels},
          {"center_input_sample", false},
          {"cross_attention_dim", cross_attention_dim},
          {"down_block_types", down_block_types},
          {"downsample_padding", 1},
          {"flip_sin_to_cos", flip_sin_to_cos},
          {"freq_shift", freq_shift},
          {"in_channels", in_channels},
          {"layers_per_block", layers_per_block},
          {"mid_block_scale_factor", 1},
          {"norm_eps", norm_eps},
          {"norm_num_groups", norm_num_groups},
          {"out_channels", out_channels},
          {"sample_size", sample_size},
          {"transformer_layers_per_block", transformer_layers_per_block},
          {"up_block_types", up_block_types},
          {"use_linear_projection", use_linear_projection}};
}

void UNetConfig::validate() const {
  const size_t n = block_out_channels.size();
  GSOFT_CHECK(n >= 1 && n <= 8, "block_out_channels: expected 1 to 8 blocks, got ", n);
  GSOFT_CHECK(down_block_types.size() == n && up_block_types.size() == n && layers_per_block.size() == n &&
                  num_attention_heads.size() == n,
              "block_out_channels has ", n, " entries, but down_block_types has ", down_block_types.size(),
              ", up_block_types ", up_block_types.size(), ", layers_per_block ", layers_per_block.size(),
              " and the attention heads ", num_attention_heads.size());
  auto in_range = [](const char* what, int64_t v, int64_t most) {
    GSOFT_CHECK(v >= 1 && v <= most, what, " is ", v, ", expected 1..", most);
  };
  in_range("in_channels", in_channels, 64);
  in_range("out_channels", out_channels, 64);
  in_range("sample_size", sample_size, 4096);
  in_range("cross_attention_dim", cross_attention_dim, 1 << 14);
  in_range("norm_num_groups", norm_num_groups, 1024);
  in_range("transformer_layers_per_block", transformer_layers_per_block, 64);
  for (size_t i = 0; i < n; ++i) {
    in_range("block_out_channels entry", block_out_channels[i], 1 << 14);
    in_range("layers_per_block entry", layers_per_block[i], 64);
    GSOFT_CHECK(block_out_channels[i] % norm_num_groups == 0, "block_out_channels[", i, "] = ", block_out_channels[i],
                " is not divisible by norm_num_groups = ", norm_num_groups);
    GSOFT_CHECK(block_out_channels[i] % num_attention_heads[i] == 0, "block_out_channels[", i, "] = ", block_out_channels[i],
                " is not divisible by its ", num_attention_heads[i], " attention heads");
  }
  const int64_t factor = int64_t{1} << (n - 1);
  GSOFT_CHECK(sample_size % factor == 0, "sample_size ", sample_size, " is not divisible by ", factor, " (", n - 1,
              " down-sampling steps)");
}

Tensor timestep_embedding(const Tensor& timesteps, int64_t dim, bool flip_sin_to_cos, double freq_shift) {
  const int64_t half = dim / 2;
  const Tensor exponent = torch::arange(half, torch::kFloat) * (-std::log(10000.0) / (static_cast<double>(half) - freq_shift));
  const Tensor args = timesteps.to(torch::kFloat).reshape({-1, 1}) * torch::exp(exponent).unsqueeze(0);
  Tensor emb = flip_sin_to_cos ? torch::cat({torch::cos(args), torch::sin(args)}, -1)
                               : torch::cat({torch::sin(args), torch::cos(args)}, -1);
  if (dim % 2 == 1) emb = F::pad(emb, F::PadFuncOptions({0, 1}));
  return emb;
}

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const UNetConfig& c) : config(c) {
  config.validate();
  const auto& ch = c.block_out_channels;
  const int64_t n = static_cast<int64_t>(ch.size());
  conv_in_ = register_module("conv_in", conv(c.in_channels, ch[0], 3));
  auto time_embedding = register_module("time_embedding", std::make_shared<torch::nn::Module>());
  time_linear_1_ = time_embedding->register_module("linear_1", linear(ch[0], c.time_embed_dim()));
  time_linear_2_ = time_embedding->register_module("linear_2", linear(c.time_embed_dim(), c.time_embed_dim()));

  auto down = register_module("down_blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < n; ++i) {
    const bool attention = c.down_block_types[i] == "CrossAttnDownBlock2D";
    down_.push_back(std::make_shared<UNetStage>(UNetStage::Kind::Down, c, c.layers_per_block[i], i == 0 ? ch[0] : ch[i - 1],
                                                ch[i], 0, attention, c.num_attention_heads[i], i < n - 1));
    down->push_back(down_.back());
  }
  mid_ = register_module("mid_block", std::make_shared<UNetStage>(UNetStage::Kind::Mid, c, 1,
                                                                  ch[n - 1], ch[n - 1], 0, true, c.num_attention_heads[n - 1], false));
  auto up = register_module("up_blocks", torch::nn::ModuleList());
  int64_t out = ch[n - 1];
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = n - 1 - i;  // the mirrored down block
    const int64_t prev = out;
    out = ch[r];
    const int64_t in = ch[std::max<int64_t>(r - 1, 0)];
    const bool attention = c.up_block_types[i] == "CrossAttnUpBlock2D";
    up_.push_back(std::make_shared<UNetStage>(UNetStage::Kind::Up, c, c.layers_per_block[r] + 1, in, out, prev, attention,
                                              c.num_attention_heads[r], i < n - 1));
    up->push_back(up_.back());
  }
  conv_norm_out_ = register_module("conv_norm_out", group_norm(c.norm_num_groups, ch[0], c.norm_eps));
  conv_out_ = register_module("conv_out", conv(ch[0], c.out_channels, 3));
}

Tensor UNet2DConditionModelImpl::forward(const Tensor& sample, const Tensor& timesteps, const Tensor& context) {
  GSOFT_CHECK(sample.dim() == 4 && sample.size(1) == config.in_channels, "sample: expected (B, ", config.in_channels,
              ", H, W), got ", format_shape(sample.sizes()));
  const int64_t factor = int64_t{1} << (config.block_out_channels.size() - 1);
  GSOFT_CHECK(sample.size(2) % factor == 0 && sample.size(3) % factor == 0, "sample: height and width must be multiples of ",
              factor, ", got ", format_shape(sample.sizes()));
  GSOFT_CHECK(context.dim() == 3 && context.size(0) == sample.size(0) && context.size(2) == config.cross_attention_dim,
              "encoder_hidden_states: expected (", sample.size(0), ", T, ", config.cross_attention_dim, "), got ",
              format_shape(context.sizes()));
  Tensor t = timesteps.dim() == 0 ? timesteps.expand({sample.size(0)}) : timesteps;
  GSOFT_CHECK(t.dim() == 1 && t.size(0) == sample.size(0), "timesteps: expected (", sample.size(0), "), got ",
              format_shape(timesteps.sizes()));
  const Tensor proj = timestep_embedding(t, config.block_out_channels[0], config.flip_sin_to_cos, config.freq_shift)
                          .to(sample.scalar_type());
  const Tensor temb = time_linear_2_(F::silu(time_linear_1_(proj)));

  Tensor h = conv_in_(sample);
  std::vector<Tensor> skips{h};
  for (auto& b : down_) h = b->forward(h, temb, context, skips);
  h = mid_->forward(h, temb, context, skips);
  for (auto& b : up_) h = b->forward(h, temb, context, skips);
  return conv_out_(F::silu(conv_norm_out_(h)));
}

}  // namespace gsoft::diffusion
