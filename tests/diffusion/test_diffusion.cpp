// The diffusion pipeline: a tiny random pipeline in diffusers' layout loads and its UNet matches an
// independent functional reference written here from diffusers' algorithm; the schedules match
// their closed forms; scenes are composed exactly and read back by the pixel rules; prompts
// follow the grammar; adapters attach by the authors' targets as the identity; training resumes
// exactly; sampling is deterministic per seed.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "gsoft/adapters/inject.h"
#include "gsoft/data/fashion_scenes.h"
#include "gsoft/diffusion/evaluator.h"
#include "gsoft/diffusion/pipeline.h"
#include "gsoft/diffusion/scheduler.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/png.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/io/adapter_io.h"
#include "gsoft/train/diffusion.h"
#include "gsoft/train/dreambooth.h"
#include "support/helpers.h"

namespace {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;
using gsoft::test::error_of;
using gsoft::test::max_abs_diff;
using gsoft::test::scratch_dir;
using torch::Tensor;

// ------------------------------------------------------------------ an independent UNet
// A functional UNet2DConditionModel over named tensors. With `create`, every tensor is drawn when
// first used, so the reference itself defines the names and shapes a checkpoint must have.
struct ReferenceUNet {
  std::map<std::string, Tensor>& w;
  bool create;
  int64_t groups = 4;
  bool linear_projection = false;

  Tensor p(const std::string& name, std::vector<int64_t> shape, bool norm_weight = false) {
    if (create && !w.count(name))
      w[name] = norm_weight ? 1.0 + 0.2 * torch::randn(shape, torch::kFloat64) : 0.3 * torch::randn(shape, torch::kFloat64);
    const Tensor& t = w.at(name);
    EXPECT_EQ(t.sizes(), torch::IntArrayRef(shape)) << name;
    return t;
  }
  Tensor conv(const std::string& n, const Tensor& x, int64_t out, int64_t k, int64_t stride = 1) {
    return F::conv2d(x, p(n + ".weight", {out, x.size(1), k, k}),
                     F::Conv2dFuncOptions().bias(p(n + ".bias", {out})).stride(stride).padding(k / 2));
  }
  Tensor linear(const std::string& n, const Tensor& x, int64_t out, bool bias = true) {
    Tensor y = torch::matmul(x, p(n + ".weight", {out, x.size(-1)}).t());
    return bias ? y + p(n + ".bias", {out}) : y;
  }
  Tensor gn(const std::string& n, const Tensor& x, double eps) {
    const int64_t C = x.size(1);
    const Tensor g = x.reshape({x.size(0), groups, -1});
    const Tensor mean = g.mean(-1, true), var = g.var(-1, false, true);
    const Tensor y = ((g - mean) / torch::sqrt(var + eps)).reshape(x.sizes());
    return y * p(n + ".weight", {C}, true).view({1, C, 1, 1}) + p(n + ".bias", {C}).view({1, C, 1, 1});
  }
  Tensor ln(const std::string& n, const Tensor& x) {
    const int64_t C = x.size(-1);
    const Tensor mean = x.mean(-1, true), var = x.var(-1, false, true);
    return (x - mean) / torch::sqrt(var + 1e-5) * p(n + ".weight", {C}, true) + p(n + ".bias", {C});
  }
  static Tensor silu(const Tensor& x) { return x * torch::sigmoid(x); }

  Tensor resnet(const std::string& n, const Tensor& x, const Tensor& temb, int64_t out) {
    Tensor h = conv(n + ".conv1", silu(gn(n + ".norm1", x, 1e-5)), out, 3);
    h = h + linear(n + ".time_emb_proj", silu(temb), out).view({x.size(0), out, 1, 1});
    h = conv(n + ".conv2", silu(gn(n + ".norm2", h, 1e-5)), out, 3);
    return (x.size(1) != out ? conv(n + ".conv_shortcut", x, out, 1) : x) + h;
  }
  Tensor attention(const std::string& n, const Tensor& x, const Tensor& ctx, int64_t heads) {
    const int64_t B = x.size(0), N = x.size(1), C = x.size(2), d = C / heads;
    const Tensor q = linear(n + ".to_q", x, C, false), k = linear(n + ".to_k", ctx, C, false),
                 v = linear(n + ".to_v", ctx, C, false);
    std::vector<Tensor> outs;
    for (int64_t h = 0; h < heads; ++h) {
      const Tensor qh = q.narrow(2, h * d, d), kh = k.narrow(2, h * d, d), vh = v.narrow(2, h * d, d);
      const Tensor scores = torch::bmm(qh, kh.transpose(1, 2)) / std::sqrt(static_cast<double>(d));
      outs.push_back(torch::bmm(torch::softmax(scores, -1), vh));
    }
    return linear(n + ".to_out.0", torch::cat(outs, 2).reshape({B, N, C}), C);
  }
  Tensor transformer(const std::string& n, const Tensor& x, const Tensor& ctx, int64_t heads) {
    const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
    Tensor h = gn(n + ".norm", x, 1e-6);
    if (!linear_projection) h = conv(n + ".proj_in", h, C, 1);
    h = h.permute({0, 2, 3, 1}).reshape({B, H * W, C});
    if (linear_projection) h = linear(n + ".proj_in", h, C);
    const std::string b = n + ".transformer_blocks.0";
    h = attention(b + ".attn1", ln(b + ".norm1", h), ln(b + ".norm1", h), heads) + h;
    h = attention(b + ".attn2", ln(b + ".norm2", h), ctx, heads) + h;
    const Tensor proj = linear(b + ".ff.net.0.proj", ln(b + ".norm3", h), 8 * C);
    const Tensor gate = proj.narrow(-1, 4 * C, 4 * C);
    const Tensor gelu = 0.5 * gate * (1.0 + torch::erf(gate / std::sqrt(2.0)));
    h = linear(b + ".ff.net.2", proj.narrow(-1, 0, 4 * C) * gelu, C) + h;
    if (linear_projection) h = linear(n + ".proj_out", h, C);
    h = h.reshape({B, H, W, C}).permute({0, 3, 1, 2});
    if (!linear_projection) h = conv(n + ".proj_out", h, C, 1);
    return h + x;
  }

  // Two levels of channels {8, 16}: CrossAttnDownBlock2D then DownBlock2D, two layers per block,
  // two heads, mirrored up blocks with three resnets each.
  Tensor forward(const Tensor& x, const Tensor& t, const Tensor& ctx) {
    const std::vector<int64_t> ch{8, 16};
    const std::vector<bool> attn{true, false};
    const int64_t heads = 2, layers = 2;
    // sinusoidal embedding, flip_sin_to_cos, freq_shift 0: [cos, sin] of t * 10000^(-i / half)
    const int64_t half = ch[0] / 2;
    const Tensor freqs = torch::exp(-std::log(10000.0) * torch::arange(half, torch::kFloat64) / half);
    const Tensor args = t.to(torch::kFloat64).unsqueeze(1) * freqs.unsqueeze(0);
    Tensor temb = torch::cat({torch::cos(args), torch::sin(args)}, 1);
    temb = linear("time_embedding.linear_2", silu(linear("time_embedding.linear_1", temb, 4 * ch[0])), 4 * ch[0]);

    Tensor h = conv("conv_in", x, ch[0], 3);
    std::vector<Tensor> skips{h};
    for (size_t i = 0; i < ch.size(); ++i) {
      const std::string n = "down_blocks." + std::to_string(i);
      for (int64_t j = 0; j < layers; ++j) {
        h = resnet(n + ".resnets." + std::to_string(j), h, temb, ch[i]);
        if (attn[i]) h = transformer(n + ".attentions." + std::to_string(j), h, ctx, heads);
        skips.push_back(h);
      }
      if (i + 1 < ch.size()) {
        h = conv(n + ".downsamplers.0.conv", h, ch[i], 3, 2);
        skips.push_back(h);
      }
    }
    h = resnet("mid_block.resnets.0", h, temb, ch.back());
    h = transformer("mid_block.attentions.0", h, ctx, heads);
    h = resnet("mid_block.resnets.1", h, temb, ch.back());
    for (size_t i = 0; i < ch.size(); ++i) {
      const size_t r = ch.size() - 1 - i;
      const std::string n = "up_blocks." + std::to_string(i);
      for (int64_t j = 0; j <= layers; ++j) {
        h = resnet(n + ".resnets." + std::to_string(j), torch::cat({h, skips.back()}, 1), temb, ch[r]);
        skips.pop_back();
        if (attn[r]) h = transformer(n + ".attentions." + std::to_string(j), h, ctx, heads);
      }
      if (i + 1 < ch.size()) {
        h = torch::repeat_interleave(torch::repeat_interleave(h, 2, 2), 2, 3);  // nearest, x2
        h = conv(n + ".upsamplers.0.conv", h, ch[r], 3);
      }
    }
    EXPECT_TRUE(skips.empty());
    return conv("conv_out", silu(gn("conv_norm_out", h, 1e-5)), x.size(1), 3);
  }
};

// The config.json diffusers writes for that UNet (attention_head_dim read as heads, as diffusers does).
std::string tiny_unet_config(bool linear_projection) {
  return nlohmann::json({{"_class_name", "UNet2DConditionModel"},
                         {"_diffusers_version", "0.21.4"},
                         {"act_fn", "silu"},
                         {"attention_head_dim", 2},
                         {"block_out_channels", {8, 16}},
                         {"center_input_sample", false},
                         {"cross_attention_dim", 12},
                         {"down_block_types", {"CrossAttnDownBlock2D", "DownBlock2D"}},
                         {"downsample_padding", 1},
                         {"flip_sin_to_cos", true},
                         {"freq_shift", 0},
                         {"in_channels", 3},
                         {"layers_per_block", 2},
                         {"mid_block_scale_factor", 1},
                         {"norm_eps", 1e-05},
                         {"norm_num_groups", 4},
                         {"out_channels", 3},
                         {"sample_size", 8},
                         {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D"}},
                         {"use_linear_projection", linear_projection}})
      .dump(2);
}

// A one-layer BERT text encoder of width `hidden` for the tiny pipelines, without dropout.
gsoft::EncoderConfig tiny_text_config(int64_t vocab_size, int64_t hidden) {
  gsoft::EncoderConfig text;
  text.vocab_size = vocab_size;
  text.hidden_size = hidden;
  text.num_hidden_layers = 1;
  text.num_attention_heads = 2;
  text.intermediate_size = 2 * hidden;
  text.max_position_embeddings = 16;
  text.hidden_dropout_prob = text.attention_probs_dropout_prob = 0;
  return text;
}

// A pipeline directory as diffusers lays it out, with the reference's random UNet tensors.
std::map<std::string, Tensor> write_tiny_pipeline(const fs::path& dir, bool linear_projection) {
  torch::manual_seed(3);
  std::map<std::string, Tensor> w;
  ReferenceUNet ref{w, true, 4, linear_projection};
  ref.forward(torch::randn({1, 3, 8, 8}, torch::kFloat64), torch::tensor({7}), torch::randn({1, 5, 12}, torch::kFloat64));
  std::map<std::string, Tensor> f32;
  for (const auto& [k, t] : w) f32[k] = t.to(torch::kFloat32);
  fs::create_directories(dir / "unet");
  gsoft::io::write_safetensors((dir / "unet" / gsoft::diffusion::kUNetWeightsFile).string(), f32, {{"format", "pt"}});
  gsoft::io::write_file_atomic((dir / "unet" / "config.json").string(), tiny_unet_config(linear_projection));
  // The text encoder: a BertModel of width 12 with the scene tokenizer.
  const std::string tok = gsoft::data::scene_tokenizer_json({"sks"});
  gsoft::diffusion::Pipeline p =
      gsoft::diffusion::Pipeline::create(gsoft::diffusion::UNetConfig::from_json(tiny_unet_config(linear_projection)),
                                         tiny_text_config(40, 12),
                                         tok, gsoft::diffusion::SchedulerConfig{}, 10, 5);
  p.save((dir / "tmp").string());
  for (const char* part : {"text_encoder", "tokenizer", "scheduler"}) fs::rename(dir / "tmp" / part, dir / part);
  fs::copy_file(dir / "tmp" / "model_index.json", dir / "model_index.json", fs::copy_options::overwrite_existing);
  fs::remove_all(dir / "tmp");
  return w;
}

class TinyPipeline : public ::testing::TestWithParam<bool> {};

TEST_P(TinyPipeline, UNetMatchesTheReference) {
  const bool linear_projection = GetParam();
  const fs::path dir = scratch_dir(std::string("tiny_pipeline_") + (linear_projection ? "linear" : "conv"));
  std::map<std::string, Tensor> w = write_tiny_pipeline(dir, linear_projection);
  gsoft::diffusion::Pipeline p = gsoft::diffusion::Pipeline::load(dir.string());
  p.unet->to(torch::kFloat64);
  torch::manual_seed(9);
  const Tensor x = torch::randn({2, 3, 8, 8}, torch::kFloat64), ctx = torch::randn({2, 5, 12}, torch::kFloat64);
  const Tensor t = torch::tensor({0, 731});
  // The reference reads the float32-rounded tensors the pipeline loaded.
  for (auto& [k, v] : w) v = v.to(torch::kFloat32).to(torch::kFloat64);
  ReferenceUNet ref{w, false, 4, linear_projection};
  const Tensor expect = ref.forward(x, t, ctx);
  torch::NoGradGuard g;
  const Tensor got = p.unet->forward(x, t, ctx);
  EXPECT_LT(max_abs_diff(got, expect), 1e-5);
  EXPECT_GT(expect.abs().max().item<double>(), 0.1);  // not a trivially small output
}

INSTANTIATE_TEST_SUITE_P(Projection, TinyPipeline, ::testing::Values(false, true),
                         [](const auto& info) { return std::string(info.param ? "linear" : "conv"); });

TEST(Pipeline, MissingMisshapedAndUnknownTensorsAreNamed) {
  const fs::path dir = scratch_dir("tiny_pipeline_bad");
  std::map<std::string, Tensor> w = write_tiny_pipeline(dir, false);
  const std::string file = (dir / "unet" / gsoft::diffusion::kUNetWeightsFile).string();
  auto write = [&](std::map<std::string, Tensor> t) {
    for (auto& [k, v] : t) v = v.to(torch::kFloat32);
    gsoft::io::write_safetensors(file, t, {});
  };
  auto missing = w;
  missing.erase("mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight");
  write(missing);
  std::string e = error_of([&] { gsoft::diffusion::Pipeline::load(dir.string()); });
  EXPECT_NE(e.find("missing tensors: mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight"), std::string::npos) << e;
  auto bad = w;
  bad["conv_in.weight"] = torch::zeros({8, 3, 1, 1});
  write(bad);
  e = error_of([&] { gsoft::diffusion::Pipeline::load(dir.string()); });
  EXPECT_NE(e.find("tensor 'conv_in.weight' has shape [8, 3, 1, 1], expected [8, 3, 3, 3]"), std::string::npos) << e;
  auto extra = w;
  extra["add_embedding.linear_1.weight"] = torch::zeros({2, 2});
  write(extra);
  e = error_of([&] { gsoft::diffusion::Pipeline::load(dir.string()); });
  EXPECT_NE(e.find("tensors the model does not have: add_embedding.linear_1.weight"), std::string::npos) << e;

  // Unsupported block types list the supported ones.
  auto cfg = nlohmann::json::parse(tiny_unet_config(false));
  cfg["down_block_types"][1] = "AttnDownBlock2D";
  e = error_of([&] { gsoft::diffusion::UNetConfig::from_json(cfg.dump(), "unet/config.json"); });
  EXPECT_NE(e.find("down block type 'AttnDownBlock2D' is not supported (supported: CrossAttnDownBlock2D, DownBlock2D)"),
            std::string::npos) << e;
}

// ------------------------------------------------------------------ schedules
TEST(Scheduler, NoisingAndDdimStepsMatchTheirClosedForms) {
  using gsoft::diffusion::NoiseSchedule;
  using gsoft::diffusion::SchedulerConfig;
  SchedulerConfig lin;  // linear 1e-4 .. 0.02 over 1000 steps
  NoiseSchedule s(lin);
  const double b1 = 1e-4 + (0.02 - 1e-4) / 999.0;
  EXPECT_NEAR(s.betas()[999].item<double>(), 0.02, 1e-15);
  EXPECT_NEAR(s.alphas_cumprod()[1].item<double>(), (1 - 1e-4) * (1 - b1), 1e-15);
  // x_t = sqrt(a) x0 + sqrt(1 - a) eps
  const double a1 = (1 - 1e-4) * (1 - b1);
  const Tensor xt = s.add_noise(torch::full({1, 2}, 1.0, torch::kFloat64), torch::full({1, 2}, 0.5, torch::kFloat64),
                                torch::tensor({1}));
  EXPECT_NEAR(xt[0][1].item<double>(), std::sqrt(a1) + 0.5 * std::sqrt(1 - a1), 1e-12);

  SchedulerConfig sc = lin;
  sc.beta_schedule = "scaled_linear";
  sc.beta_start = 0.00085;
  sc.beta_end = 0.012;
  NoiseSchedule ss(sc);
  EXPECT_NEAR(ss.betas()[0].item<double>(), 0.00085, 1e-15);
  EXPECT_NEAR(ss.betas()[500].item<double>(),
              std::pow(std::sqrt(0.00085) + 500.0 / 999.0 * (std::sqrt(0.012) - std::sqrt(0.00085)), 2), 1e-15);

  // A hand-checkable schedule: constant beta 0.1 over 10 steps, alpha_bar_t = 0.9^(t+1).
  SchedulerConfig c;
  c.num_train_timesteps = 10;
  c.beta_start = c.beta_end = 0.1;
  c.steps_offset = 1;
  NoiseSchedule h(c);
  EXPECT_EQ(h.ddim_timesteps(5), (std::vector<int64_t>{9, 7, 5, 3, 1}));
  c.steps_offset = 0;
  NoiseSchedule d(c);
  EXPECT_EQ(d.ddim_timesteps(5), (std::vector<int64_t>{8, 6, 4, 2, 0}));
  const Tensor x = torch::full({1}, 1.0, torch::kFloat64), eps = torch::full({1}, 0.5, torch::kFloat64);
  const double a8 = std::pow(0.9, 9), a6 = std::pow(0.9, 7);
  const double x0 = (1.0 - std::sqrt(1 - a8) * 0.5) / std::sqrt(a8);
  EXPECT_NEAR(d.ddim_step(eps, 8, 5, x).item<double>(), std::sqrt(a6) * x0 + std::sqrt(1 - a6) * 0.5, 1e-12);
  // The predicted x0 is clipped to [-1, 1]: here (3 - sqrt(1 - a8) * 0.5) / sqrt(a8) > 1.
  const Tensor big = torch::full({1}, 3.0, torch::kFloat64);
  EXPECT_NEAR(d.ddim_step(eps, 8, 5, big).item<double>(), std::sqrt(a6) * 1.0 + std::sqrt(1 - a6) * 0.5, 1e-12);
  // With use_clipped_model_output the noise is re-derived from the clipped x0: (3 - sqrt(a8)) / sqrt(1 - a8).
  const double e8 = (3.0 - std::sqrt(a8)) / std::sqrt(1 - a8);
  EXPECT_NEAR(d.ddim_step(eps, 8, 5, big, true).item<double>(), std::sqrt(a6) + std::sqrt(1 - a6) * e8, 1e-12);
  // Without clipping the two agree.
  EXPECT_NEAR(d.ddim_step(eps, 8, 5, x, true).item<double>(), d.ddim_step(eps, 8, 5, x).item<double>(), 1e-12);
  // The last step goes to alpha = 1 (set_alpha_to_one): the result is the predicted x0.
  const double a0 = 0.9;
  EXPECT_NEAR(d.ddim_step(eps, 0, 5, x * 0.5).item<double>(), (0.5 - std::sqrt(1 - a0) * 0.5) / std::sqrt(a0), 1e-12);

  std::string e = error_of([] { gsoft::diffusion::SchedulerConfig::from_json(R"({"prediction_type":"v_prediction"})"); });
  EXPECT_NE(e.find("prediction_type 'v_prediction' is not supported (epsilon)"), std::string::npos) << e;
}

// ------------------------------------------------------------------ scenes and prompts
TEST(Scenes, CompositionIsExactAndThePixelRulesReadItBack) {
  using namespace gsoft::data;
  const Tensor item = (torch::arange(28 * 28, torch::kInt32) % 251).to(torch::kUInt8).view({28, 28});
  Scene s;
  s.label = 7;
  Tensor c = compose_scene(item, s);
  EXPECT_TRUE(torch::equal(c.narrow(0, 2, 28).narrow(1, 2, 28), item));
  EXPECT_EQ(c.to(torch::kInt32).sum().item<int64_t>(), item.to(torch::kInt32).sum().item<int64_t>());  // border is 0
  s.size = ItemSize::Small;
  s.quadrant = Quadrant::BottomRight;
  c = compose_scene(item, s);
  const auto it = item.to(torch::kInt32);
  for (int r : {0, 5, 13})
    for (int k : {0, 7, 13}) {
      const int sum = it[2 * r][2 * k].item<int>() + it[2 * r][2 * k + 1].item<int>() + it[2 * r + 1][2 * k].item<int>() +
                      it[2 * r + 1][2 * k + 1].item<int>();
      EXPECT_EQ(c[17 + r][17 + k].item<int>(), (sum + 2) / 4) << r << "," << k;
    }
  EXPECT_EQ(c.narrow(0, 0, 17).to(torch::kInt32).sum().item<int64_t>(), 0);  // only the bottom right quadrant, from (17, 17)
  EXPECT_EQ(c.narrow(1, 0, 17).to(torch::kInt32).sum().item<int64_t>(), 0);
  s.negative = true;
  const Tensor n = compose_scene(item, s);
  EXPECT_TRUE(torch::equal(n, 255 - c));

  // Read back by the rules, for every size, quadrant and polarity of a real-looking item (a blob).
  const Tensor blob = (torch::full({28, 28}, 0, torch::kUInt8)).index_put_({torch::indexing::Slice(4, 24), torch::indexing::Slice(6, 22)}, 200);
  for (bool neg : {false, true})
    for (ItemSize size : {ItemSize::Large, ItemSize::Small})
      for (Quadrant q : all_quadrants()) {
        Scene t{3, size, q, neg};
        const SceneAttributes a = measure_attributes(compose_scene(blob, t));
        EXPECT_EQ(a.negative, neg);
        EXPECT_EQ(a.size, size);
        if (size == ItemSize::Small) EXPECT_EQ(a.quadrant, q);
        EXPECT_TRUE(attributes_match(scene_prompt(t), a));
        // The classifier's canonical form: positive, a small item's quadrant enlarged 2x.
        const Tensor canon = canonical_scenes(compose_scene(blob, t).unsqueeze(0))[0];
        const Tensor want = size == ItemSize::Large
                                ? compose_scene(blob, Scene{3})
                                : compose_scene(blob, Scene{3, ItemSize::Small, Quadrant::TopLeft})
                                      .narrow(0, 0, 16).narrow(1, 0, 16).repeat_interleave(2, 0).repeat_interleave(2, 1);
        EXPECT_TRUE(torch::equal(canon, want)) << neg << " " << static_cast<int>(size) << " " << static_cast<int>(q);
      }
}

TEST(Scenes, PromptsFollowTheGrammar) {
  using namespace gsoft::data;
  Prompt p = parse_prompt("a photo of a small ankle boot at the bottom left, negative");
  EXPECT_EQ(*p.label, 9);
  EXPECT_EQ(*p.size, ItemSize::Small);
  EXPECT_EQ(*p.quadrant, Quadrant::BottomLeft);
  EXPECT_TRUE(p.negative);
  EXPECT_EQ(p.text(), "a photo of a small ankle boot at the bottom left, negative");
  p = parse_prompt("a photo of a large sks t-shirt");
  EXPECT_EQ(p.token, "sks");
  EXPECT_EQ(*p.label, 0);
  p = parse_prompt("A photo of a sneaker");
  EXPECT_FALSE(p.size.has_value());
  EXPECT_FALSE(parse_prompt("").label.has_value());
  for (const char* bad : {"a photo of a large dog", "a picture of a large bag", "a photo of a large bag at the top left",
                          "a photo of a small bag at the middle left", "a photo of a large bag, positive",
                          "a photo of a large big red bag"}) {
    const std::string e = error_of([&] { parse_prompt(bad); });
    EXPECT_NE(e.find(std::string("prompt \"") + bad + "\""), std::string::npos) << e;
    EXPECT_NE(e.find("the grammar is: a photo of a[ {large|small}]"), std::string::npos) << e;
  }
  // Training captions leave attributes open but never drop ", negative".
  std::mt19937_64 rng(1);
  Scene s{2, ItemSize::Small, Quadrant::TopRight, true};
  int empty = 0, no_size = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::string c = training_caption(s, CaptionDropout{}, rng);
    if (c.empty()) {
      ++empty;
      continue;
    }
    const Prompt q = parse_prompt(c);
    EXPECT_TRUE(q.negative) << c;
    EXPECT_EQ(*q.label, 2);
    no_size += !q.size;
  }
  EXPECT_NEAR(empty / 2000.0, 0.1, 0.03);
  EXPECT_NEAR(no_size / 1800.0, 0.1, 0.03);
}

TEST(Png, RoundTripsAndNamesBadFiles) {
  const fs::path dir = scratch_dir("png");
  gsoft::io::GrayImage img;
  img.width = 5;
  img.height = 3;
  for (int i = 0; i < 15; ++i) img.pixels.push_back(static_cast<uint8_t>(i * 17));
  gsoft::io::write_png((dir / "a.png").string(), img);
  const gsoft::io::GrayImage back = gsoft::io::read_png((dir / "a.png").string());
  EXPECT_EQ(back.width, 5);
  EXPECT_EQ(back.height, 3);
  EXPECT_EQ(back.pixels, img.pixels);
  gsoft::test::write_text(dir / "b.png", "not a png");
  const std::string e = error_of([&] { gsoft::io::read_png((dir / "b.png").string()); });
  EXPECT_NE(e.find("b.png: not a PNG file"), std::string::npos) << e;
}

// ------------------------------------------------------------------ adapters, training, sampling
gsoft::diffusion::Pipeline tiny_scene_pipeline(uint64_t seed) {
  gsoft::diffusion::UNetConfig u;
  u.in_channels = u.out_channels = 1;
  u.sample_size = 32;
  u.block_out_channels = {8, 16};
  u.down_block_types = {"DownBlock2D", "CrossAttnDownBlock2D"};
  u.up_block_types = {"CrossAttnUpBlock2D", "UpBlock2D"};
  u.layers_per_block = {1, 1};
  u.num_attention_heads = {2, 2};
  u.cross_attention_dim = 16;
  u.norm_num_groups = 4;
  const std::string tok = gsoft::data::scene_tokenizer_json(gsoft::data::default_rare_tokens());
  return gsoft::diffusion::Pipeline::create(u, tiny_text_config(gsoft::Tokenizer::from_json(tok).vocab_size(), 16), tok,
                                            gsoft::diffusion::SchedulerConfig{}, 16, seed);
}

gsoft::data::ImageDataset random_items(int64_t n) {
  torch::manual_seed(4);
  gsoft::data::ImageDataset d;
  d.images = torch::randint(0, 256, {n, 1, 28, 28}, torch::kLong).to(torch::kUInt8);
  d.labels = torch::arange(n, torch::kLong) % 10;
  d.num_classes = 10;
  return d;
}

TEST(DiffusionAdapters, InjectByTheAuthorsTargetsAsTheIdentity) {
  gsoft::diffusion::Pipeline p = tiny_scene_pipeline(1);
  torch::manual_seed(2);
  const Tensor x = torch::randn({2, 1, 32, 32}), ctx = torch::randn({2, 16, 16}), t = torch::tensor({10, 900});
  torch::NoGradGuard g;
  const Tensor before = p.unet->forward(x, t, ctx);
  for (gsoft::Method m : {gsoft::Method::GSOFT, gsoft::Method::DoubleGSOFT, gsoft::Method::LoRA, gsoft::Method::BOFT}) {
    gsoft::diffusion::Pipeline q = tiny_scene_pipeline(1);
    gsoft::AdapterConfig c;
    c.method = m;
    c.target_modules = {"to_q", "to_k", "to_v", "to_out.0"};
    c.block_size = 4;
    if (m == gsoft::Method::BOFT) c.boft_n_butterfly_factor = 2;
    const gsoft::InjectionReport r = gsoft::inject_adapters(*q.unet, c);
    // 4 transformer blocks (down_blocks.1, mid_block, two in up_blocks.0) x 2 attentions x 4 projections
    EXPECT_EQ(r.adapted.size(), 32u) << gsoft::to_string(m);
    for (const auto& a : r.adapted)
      EXPECT_TRUE(a.name.find(".attn1.") != std::string::npos || a.name.find(".attn2.") != std::string::npos) << a.name;
    EXPECT_LT(max_abs_diff(q.unet->forward(x, t, ctx), before), 1e-5) << gsoft::to_string(m);
  }
  // Convolutions take adapters too (AdaptableConv2d).
  gsoft::diffusion::Pipeline q = tiny_scene_pipeline(1);
  gsoft::AdapterConfig c;
  c.method = gsoft::Method::LoRA;
  c.target_modules = {"conv1", "conv2"};
  EXPECT_EQ(gsoft::inject_adapters(*q.unet, c).adapted.size(), 2u * 8u);  // 8 resnets: 1 + 1 down, 2 mid, 2 + 2 up
  EXPECT_LT(max_abs_diff(q.unet->forward(x, t, ctx), before), 1e-5);
}

TEST(DiffusionPretrain, ResumeRepeatsTheUninterruptedRun) {
  const auto items = random_items(20);
  const fs::path dir = scratch_dir("diffusion_resume");
  gsoft::DiffusionPretrainOptions o;
  o.max_steps = 4;
  o.batch_size = 3;
  o.warmup_steps = 2;
  o.checkpoint_every = 0;
  o.log_every = 1;
  o.out_dir = (dir / "full").string();
  gsoft::diffusion::Pipeline a = tiny_scene_pipeline(7);
  const auto ra = gsoft::pretrain_diffusion(a, items, o);
  ASSERT_EQ(ra.end_step, 4);

  o.out_dir = (dir / "split").string();
  o.stop_at_step = 2;
  gsoft::diffusion::Pipeline b = tiny_scene_pipeline(7);
  EXPECT_EQ(gsoft::pretrain_diffusion(b, items, o).end_step, 2);
  o.stop_at_step = 0;
  gsoft::diffusion::Pipeline c = tiny_scene_pipeline(7);  // a fresh process would start from the seed too
  const auto rc = gsoft::pretrain_diffusion(c, items, o);
  EXPECT_EQ(rc.start_step, 2);
  ASSERT_EQ(rc.losses.size(), 2u);
  EXPECT_DOUBLE_EQ(rc.losses[1], ra.losses[3]);
  auto pa = a.unet->named_parameters(), pc = c.unet->named_parameters();
  for (const auto& q : pa) EXPECT_TRUE(torch::equal(q.value(), pc[q.key()])) << q.key();
  // The saved pipelines (EMA weights) agree as files, and load.
  const auto fa = gsoft::io::read_safetensors((dir / "full" / "pipeline" / "unet" / gsoft::diffusion::kUNetWeightsFile).string());
  const auto fc = gsoft::io::read_safetensors((dir / "split" / "pipeline" / "unet" / gsoft::diffusion::kUNetWeightsFile).string());
  for (const auto& [k, t] : fa.tensors) EXPECT_TRUE(torch::equal(t, fc.tensors.at(k))) << k;
  gsoft::diffusion::Pipeline::load((dir / "full" / "pipeline").string());
}

TEST(DiffusionSampling, SameSeedSameImageWhateverTheBatch) {
  gsoft::diffusion::Pipeline p = tiny_scene_pipeline(3);
  gsoft::diffusion::SampleOptions o;
  o.steps = 4;
  const std::vector<std::string> prompts{"a photo of a large bag", "a photo of a small coat at the top left"};
  const Tensor a = gsoft::diffusion::sample_images(p, prompts, {11, 12}, o);
  const Tensor b = gsoft::diffusion::sample_images(p, prompts, {11, 12}, o);
  EXPECT_TRUE(torch::equal(a, b));
  o.batch_size = 1;
  const Tensor c = gsoft::diffusion::sample_images(p, {prompts[1]}, {12}, o);
  EXPECT_LT(max_abs_diff(c[0], a[1]), 1e-5);
  const Tensor d = gsoft::diffusion::sample_images(p, {prompts[1]}, {13}, o);
  EXPECT_GT(max_abs_diff(d[0], a[1]), 1e-2);
  EXPECT_EQ(a.sizes(), torch::IntArrayRef({2, 1, 32, 32}));
  EXPECT_LE(a.abs().max().item<double>(), 1.0);
}

// ------------------------------------------------------------------ DreamBooth (issue 15)
namespace dreambooth {

TEST(DreamBooth, PriorPreservationLossFollowsItsFormula) {
  const Tensor pred = torch::tensor({1.0, 2.0, 3.0, 5.0}).view({4, 1});
  const Tensor noise = torch::tensor({0.0, 0.0, 1.0, 1.0}).view({4, 1});
  // instances: rows 0-1, mse = (1 + 4) / 2 = 2.5; class rows 2-3, mse = (4 + 16) / 2 = 10
  EXPECT_DOUBLE_EQ(gsoft::dreambooth_loss(pred, noise, 2, 0.5).item<double>(), 2.5 + 0.5 * 10);
  EXPECT_DOUBLE_EQ(gsoft::dreambooth_loss(pred, noise, 2, 0.0).item<double>(), 2.5);
  EXPECT_DOUBLE_EQ(gsoft::dreambooth_loss(pred, noise, 4, 1.0).item<double>(), (1 + 4 + 4 + 16) / 4.0);
}

TEST(DreamBooth, SubjectViewsAreShiftedCopiesOfTheLargeScene) {
  const Tensor item = (torch::arange(28 * 28, torch::kInt32) % 200 + 1).to(torch::kUInt8).view({28, 28});
  const Tensor v = gsoft::subject_views(item, 5);
  ASSERT_EQ(v.sizes(), torch::IntArrayRef({5, 32, 32}));
  EXPECT_TRUE(torch::equal(v[0], gsoft::data::compose_scene(item, gsoft::data::Scene{})));
  for (int64_t i = 1; i < 5; ++i) {
    EXPECT_FALSE(torch::equal(v[i], v[0]));
    EXPECT_EQ(v[i].to(torch::kInt64).sum().item<int64_t>(), v[0].to(torch::kInt64).sum().item<int64_t>());  // nothing cut off
  }
}

TEST(DreamBooth, AdapterLoadsSamplesMergesAndLeavesTheBaseUntouched) {
  const fs::path dir = scratch_dir("dreambooth");
  gsoft::diffusion::Pipeline base = tiny_scene_pipeline(5);
  base.save((dir / "base").string());
  const std::string unet_file = (dir / "base" / "unet" / gsoft::diffusion::kUNetWeightsFile).string();
  const auto before = gsoft::io::read_safetensors(unet_file);
  const Tensor item = (torch::arange(28 * 28, torch::kInt32) % 200 + 1).to(torch::kUInt8).view({28, 28});
  gsoft::Subject subject{gsoft::subject_views(item, 4), 7, "sks"};
  EXPECT_EQ(subject.instance_prompt(), "a photo of a large sks sneaker");
  EXPECT_EQ(subject.class_prompt(), "a photo of a large sneaker");
  const Tensor classes = torch::randint(0, 256, {6, 32, 32}, torch::kLong).to(torch::kUInt8);
  gsoft::diffusion::SampleOptions so;
  so.steps = 3;
  const std::vector<std::string> prompts{subject.instance_prompt(), "a photo of a small sks sneaker at the top left"};
  for (gsoft::Method m : {gsoft::Method::GSOFT, gsoft::Method::DoubleGSOFT, gsoft::Method::LoRA, gsoft::Method::BOFT,
                          gsoft::Method::OFT, gsoft::Method::Full}) {
    const std::string name = gsoft::to_string(m);
    gsoft::diffusion::Pipeline p = gsoft::diffusion::Pipeline::load((dir / "base").string());
    gsoft::AdapterConfig c;
    c.method = m;
    if (m != gsoft::Method::Full) c.target_modules = {"to_q", "to_k", "to_v", "to_out.0"};
    if (m != gsoft::Method::LoRA && m != gsoft::Method::Full) c.block_size = 4;
    if (m == gsoft::Method::BOFT) c.boft_n_butterfly_factor = 2;
    gsoft::DreamBoothOptions o;
    o.max_steps = 3;
    o.batch_size = 2;
    o.lr = 1e-2;
    o.save_steps = {2};
    o.out_dir = (dir / name).string();
    const auto r = gsoft::train_dreambooth(p, subject, classes, c, o);
    EXPECT_EQ(r.end_step, 3) << name;
    EXPECT_GT(r.trainable_params, 0);
    // The base pipeline's files are bit-identical, whatever the method.
    const auto after = gsoft::io::read_safetensors(unet_file);
    for (const auto& [k, t] : before.tensors) EXPECT_TRUE(torch::equal(t, after.tensors.at(k))) << name << " " << k;
    const Tensor trained = gsoft::diffusion::sample_images(p, prompts, {1, 2}, so);
    if (m == gsoft::Method::Full) {
      // Full fine-tuning writes a whole pipeline that samples what the trained model samples.
      gsoft::diffusion::Pipeline q = gsoft::diffusion::Pipeline::load((dir / name / "pipeline").string());
      EXPECT_LT(max_abs_diff(gsoft::diffusion::sample_images(q, prompts, {1, 2}, so), trained), 1e-5);
      EXPECT_TRUE(fs::exists(dir / name / "pipeline-step2" / "model_index.json"));
      continue;
    }
    EXPECT_TRUE(fs::exists(dir / name / "adapter-step2" / "adapter_config.json")) << name;
    // The adapter loads into a fresh base and samples what the trained model samples...
    gsoft::diffusion::Pipeline q = gsoft::diffusion::Pipeline::load((dir / "base").string());
    gsoft::io::load_adapter((dir / name / "adapter").string(), *q.unet);
    const Tensor loaded = gsoft::diffusion::sample_images(q, prompts, {1, 2}, so);
    EXPECT_LT(max_abs_diff(loaded, trained), 1e-5) << name;
    // ... it changed the model ...
    gsoft::diffusion::Pipeline b = gsoft::diffusion::Pipeline::load((dir / "base").string());
    EXPECT_GT(max_abs_diff(gsoft::diffusion::sample_images(b, prompts, {1, 2}, so), trained), 1e-4) << name;
    // ... and merged into the UNet's weights file (as gsoft merge does) it samples the same.
    fs::create_directories(dir / (name + "-merged"));
    for (const char* part : {"text_encoder", "tokenizer", "scheduler", "unet"})
      fs::copy(dir / "base" / part, dir / (name + "-merged") / part, fs::copy_options::recursive);
    fs::copy_file(dir / "base" / "model_index.json", dir / (name + "-merged") / "model_index.json");
    const std::string merged_file = (dir / (name + "-merged") / "unet" / gsoft::diffusion::kUNetWeightsFile).string();
    fs::remove(merged_file);
    gsoft::io::merge_to(unet_file, (dir / name / "adapter").string(), merged_file);
    gsoft::diffusion::Pipeline mp = gsoft::diffusion::Pipeline::load((dir / (name + "-merged")).string());
    EXPECT_LT(max_abs_diff(gsoft::diffusion::sample_images(mp, prompts, {1, 2}, so), trained), 1e-4) << name;
  }
}

}  // namespace dreambooth

}  // namespace
