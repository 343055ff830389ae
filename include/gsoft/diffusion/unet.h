#pragma once
// A conditional UNet with the structure and parameter names of diffusers' UNet2DConditionModel
// (the denoiser of Stable Diffusion), sized from a diffusers unet/config.json, so one class loads
// gsoft's own small pipelines and checkpoints of that family alike.
//
//   conv_in, time_proj (sinusoidal), time_embedding.linear_1/linear_2,
//   down_blocks.i.{resnets.j, attentions.j, downsamplers.0.conv}, mid_block.{resnets, attentions},
//   up_blocks.i.{resnets.j, attentions.j, upsamplers.0.conv}, conv_norm_out, conv_out
//
// resnets.j: norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut (when channels change);
// attentions.j: norm, proj_in, transformer_blocks.0.{norm1, attn1, norm2, attn2, norm3,
// ff.net.0.proj, ff.net.2}, proj_out; attn1/attn2: to_q, to_k, to_v, to_out.0.
//
// Every linear layer is an AdaptableLinear and every convolution an AdaptableConv2d, so the
// adapters attach through inject_adapters by name (the GSOFT authors' targets are to_q, to_k,
// to_v, to_out.0).
#include <torch/nn/module.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "gsoft/adapters/adaptable_conv2d.h"
#include "gsoft/adapters/adaptable_linear.h"

namespace gsoft::diffusion {

struct UNetConfig {
  int64_t in_channels = 4;
  int64_t out_channels = 4;
  int64_t sample_size = 64;
  std::vector<int64_t> block_out_channels{320, 640, 1280, 1280};
  std::vector<std::string> down_block_types{"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                            "DownBlock2D"};
  std::vector<std::string> up_block_types{"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"};
  std::vector<int64_t> layers_per_block{2, 2, 2, 2};  // one per down block
  // Heads per block. diffusers reads them from "attention_head_dim" when "num_attention_heads" is
  // null (a naming quirk kept for Stable Diffusion's configs); the head size is channels / heads.
  std::vector<int64_t> num_attention_heads{8, 8, 8, 8};
  int64_t cross_attention_dim = 1280;
  int64_t transformer_layers_per_block = 1;
  int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool use_linear_projection = false;  // proj_in/proj_out as Linear instead of 1x1 Conv2d
  bool flip_sin_to_cos = true;
  double freq_shift = 0;

  // Reads diffusers' unet/config.json. Throws std::runtime_error naming `origin` and the field for
  // a bad value, an unsupported block type (listing the supported ones) or an unsupported option.
  static UNetConfig from_json(const std::string& text, const std::string& origin = "unet/config.json");
  // diffusers' config.json fields ("_class_name": "UNet2DConditionModel").
  nlohmann::json to_json() const;
  int64_t time_embed_dim() const { return block_out_channels.at(0) * 4; }
  // Throws std::invalid_argument for inconsistent sizes (lists of different lengths, channels not
  // divisible by the groups or heads, a sample size the down-sampling does not divide).
  void validate() const;
};

const std::vector<std::string>& supported_down_block_types();  // CrossAttnDownBlock2D, DownBlock2D
const std::vector<std::string>& supported_up_block_types();    // CrossAttnUpBlock2D, UpBlock2D

// diffusers' get_timestep_embedding: (N) timesteps -> (N, dim) sinusoids with max period 10000.
torch::Tensor timestep_embedding(const torch::Tensor& timesteps, int64_t dim, bool flip_sin_to_cos, double freq_shift);

class UNetStage;  // one down, mid or up block (internal)

class UNet2DConditionModelImpl : public torch::nn::Module {
 public:
  explicit UNet2DConditionModelImpl(const UNetConfig& config);
  // sample (B, in_channels, H, W), timesteps (B) or a scalar, encoder_hidden_states
  // (B, T, cross_attention_dim) -> the predicted noise (B, out_channels, H, W).
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                        const torch::Tensor& encoder_hidden_states);

  UNetConfig config;

 private:
  AdaptableConv2d conv_in_{nullptr}, conv_out_{nullptr};
  AdaptableLinear time_linear_1_{nullptr}, time_linear_2_{nullptr};
  torch::nn::GroupNorm conv_norm_out_{nullptr};
  std::vector<std::shared_ptr<UNetStage>> down_, up_;
  std::shared_ptr<UNetStage> mid_;
};
TORCH_MODULE(UNet2DConditionModel);

}  // namespace gsoft::diffusion
