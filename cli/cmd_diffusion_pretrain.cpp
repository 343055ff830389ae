// gsoft diffusion pretrain: a text-to-image pipeline (text encoder and UNet together) pretrained on
// captioned Fashion-MNIST scenes, resumable, with a sample grid at checkpoints.
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "diffusion_common.h"
#include "distributed.h"
#include "gsoft/core/runtime.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/train/diffusion.h"
#include "json_config.h"
#include "progress.h"

namespace gsoft::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct DiffusionPretrainCli {
  std::string out, data, unet_config;
  // Measured on 2 cores: cross-attention at 16x16 (256 tokens) more than doubled the UNet's time, so
  // it starts at 8x8, where wider channels are cheap (docs/diffusion.md).
  std::vector<int64_t> channels{32, 64, 128};
  int64_t layers_per_block = 1, attention_from = 2, heads = 4, groups = 8;
  int64_t text_hidden = 64, text_layers = 2, text_heads = 4, prompt_tokens = 16;
  int64_t sample_every = 500, sample_steps = 25;
  bool no_resume = false;
  DiffusionPretrainOptions train;
  DistCliOptions dist;
  CLI::App* cmd = nullptr;
};

diffusion::UNetConfig unet_config(const DiffusionPretrainCli& o) {
  if (!o.unet_config.empty()) {
    std::ifstream in(o.unet_config);
    if (!in) throw std::runtime_error(o.unet_config + ": cannot open");
    std::stringstream ss;
    ss << in.rdbuf();
    return diffusion::UNetConfig::from_json(ss.str(), o.unet_config);
  }
  diffusion::UNetConfig u;
  const auto n = static_cast<int64_t>(o.channels.size());
  u.in_channels = u.out_channels = 1;
  u.sample_size = data::kSceneSide;
  u.block_out_channels = o.channels;
  u.down_block_types.clear();
  u.up_block_types.clear();
  for (int64_t i = 0; i < n; ++i) {
    u.down_block_types.push_back(i < o.attention_from ? "DownBlock2D" : "CrossAttnDownBlock2D");
    u.up_block_types.push_back(n - 1 - i < o.attention_from ? "UpBlock2D" : "CrossAttnUpBlock2D");
  }
  u.layers_per_block.assign(static_cast<size_t>(n), o.layers_per_block);
  u.num_attention_heads.assign(static_cast<size_t>(n), o.heads);
  u.cross_attention_dim = o.text_hidden;
  u.norm_num_groups = o.groups;
  u.validate();
  return u;
}

// Three prompts per class: large, small at the top left, large negative.
std::vector<std::string> grid_prompts() {
  std::vector<std::string> out;
  for (const auto& c : data::fashion_class_names())
    for (const char* form : {"a photo of a large %s", "a photo of a small %s at the top left", "a photo of a large %s, negative"}) {
      char buf[128];
      std::snprintf(buf, sizeof buf, form, c.c_str());
      out.push_back(buf);
    }
  return out;
}

void run_pretrain(DiffusionPretrainCli& o) {
  const auto group = launch_or_join(o.dist);
  if (!group) return;  // this process launched the workers
  const bool main_rank = group->is_main();
  const data::ImageDataset items = fashion_items(o.data, true);
  const diffusion::UNetConfig u = unet_config(o);
  const std::string tokenizer = data::scene_tokenizer_json(data::default_rare_tokens());
  EncoderConfig text;
  text.vocab_size = Tokenizer::from_json(tokenizer).vocab_size();
  text.hidden_size = o.text_hidden;
  text.num_hidden_layers = o.text_layers;
  text.num_attention_heads = o.text_heads;
  text.intermediate_size = 4 * o.text_hidden;
  text.max_position_embeddings = o.prompt_tokens;
  text.hidden_dropout_prob = text.attention_probs_dropout_prob = 0.0;
  diffusion::Pipeline p = diffusion::Pipeline::create(u, text, tokenizer, diffusion::SchedulerConfig{}, o.prompt_tokens,
                                                      o.train.seed);
  DiffusionPretrainOptions t = o.train;
  t.out_dir = o.out;
  t.resume = !o.no_resume;
  t.group = group.get();
  if (main_rank) {
    fs::create_directories(o.out);
    io::write_file_atomic((fs::path(o.out) / "run_config.json").string(), resolved_options(o.cmd).dump(2) + "\n");
  }
  int64_t unet_params = 0, text_params = 0;
  for (const auto& q : p.unet->parameters()) unet_params += q.numel();
  for (const auto& q : p.text_encoder->parameters()) text_params += q.numel();
  if (main_rank)
    std::cerr << "diffusion pretrain: " << items.size() << " Fashion-MNIST training items; UNet " << unet_params
            << " parameters, text encoder " << text_params << "; " << t.max_steps << " steps of " << t.batch_size
            << " scenes\n";

  const fs::path samples = fs::path(o.out) / "samples";
  const std::vector<std::string> prompts = grid_prompts();
  auto on_checkpoint = [&](int64_t step, diffusion::Pipeline& ema) {
    if (o.sample_every <= 0 || (step % o.sample_every != 0 && step != t.max_steps)) return;
    fs::create_directories(samples);
    std::vector<uint64_t> seeds(prompts.size());
    for (size_t i = 0; i < seeds.size(); ++i) seeds[i] = i;
    diffusion::SampleOptions so;
    so.steps = o.sample_steps;
    const torch::Tensor images = diffusion::to_uint8(diffusion::sample_images(ema, prompts, seeds, so));
    char name[64];
    std::snprintf(name, sizeof name, "step_%06lld.png", static_cast<long long>(step));
    io::write_png((samples / name).string(), diffusion::image_grid(images, 3));
    std::cerr << "diffusion pretrain: sample grid " << (samples / name).string() << "\n";
  };
  const DiffusionPretrainResult r =
      pretrain_diffusion(p, items, t, callbacks_for_rank(*group, console_callbacks("diffusion pretrain", t.log_every)),
                         on_checkpoint);
  if (other_rank_done(*group, r.interrupted)) return;  // rank 0 reports
  if (r.interrupted) {
    std::cerr << "diffusion pretrain: interrupted at step " << r.end_step << " of " << r.total_steps
              << "; checkpoint saved. Run the same command again to resume.\n";
    throw ExitStatus{130};
  }
  const json summary = {{"steps", r.end_step}, {"max_steps", r.total_steps}, {"train_seconds", r.train_seconds},
                        {"final_loss", r.losses.empty() ? 0.0 : r.losses.back()}, {"unet_params", unet_params},
                        {"text_encoder_params", text_params}, {"peak_rss_mb", peak_rss_mb()},
                        {"pipeline", (fs::path(o.out) / "pipeline").string()}};
  io::write_file_atomic((fs::path(o.out) / "summary.json").string(), summary.dump(2) + "\n");
  std::cout << summary.dump() << std::endl;
}

}  // namespace

void setup_diffusion_pretrain(CLI::App* diffusion, Runners& runners) {
  auto o = std::make_shared<DiffusionPretrainCli>();
  auto* cmd = diffusion->add_subcommand(
      "pretrain",
      "Pretrain a text-to-image pipeline on captioned Fashion-MNIST scenes (the scene grammar is in\n"
      "'gsoft diffusion sample --help'). RUN_DIR gets pipeline/ (the EMA weights, in diffusers' layout),\n"
      "checkpoint.safetensors (Ctrl-C saves; the same command resumes exactly), metrics.jsonl, samples/step_N.png\n"
      "and summary.json.\n"
      "Example: gsoft diffusion pretrain --out runs/fashion-diffusion");
  o->cmd = cmd;
  add_json_config(cmd);
  auto& t = o->train;
  cmd->add_option("--out", o->out, "Run directory")->required();
  cmd->add_option("--data", o->data, "Fashion-MNIST directory (default: Debian's /usr/share/datasets/fashion-mnist)");
  cmd->add_option("--channels", o->channels, "UNet block_out_channels, one per level")->delimiter(',')->capture_default_str();
  cmd->add_option("--layers-per-block", o->layers_per_block, "Resnets per down block")->capture_default_str()->check(CLI::Range(1, 8));
  cmd->add_option("--attention-from", o->attention_from, "First level with cross-attention (0: every level)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--heads", o->heads, "Attention heads")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--groups", o->groups, "GroupNorm groups")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--unet-config", o->unet_config, "A diffusers unet/config.json instead of the flags above");
  cmd->add_option("--text-hidden", o->text_hidden, "Text encoder width (the cross-attention dim)")->capture_default_str();
  cmd->add_option("--text-layers", o->text_layers, "Text encoder layers")->capture_default_str();
  cmd->add_option("--text-heads", o->text_heads, "Text encoder heads")->capture_default_str();
  cmd->add_option("--prompt-tokens", o->prompt_tokens, "Prompt length in tokens (padding included)")->capture_default_str();
  cmd->add_option("--max-steps", t.max_steps, "Training steps (the schedule's length)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--stop-at", t.stop_at_step, "End this run after this step without changing the schedule")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch-size", t.batch_size, "Scenes per step")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--lr", t.lr, "Peak learning rate (warm-up, then cosine to 10%)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--weight-decay", t.weight_decay, "AdamW decoupled weight decay (not on 1-D tensors)")->capture_default_str();
  cmd->add_option("--warmup-steps", t.warmup_steps, "Linear warm-up steps")->capture_default_str();
  cmd->add_option("--ema-decay", t.ema_decay, "EMA decay of the saved weights")->capture_default_str();
  cmd->add_option("--log-every", t.log_every, "Progress line and metrics.jsonl entry every N steps")->capture_default_str();
  cmd->add_option("--checkpoint-every", t.checkpoint_every, "Checkpoint (and pipeline/) every N steps")->capture_default_str();
  cmd->add_option("--sample-every", o->sample_every, "Sample grid at checkpoints that are multiples of N (0: never)")
      ->capture_default_str();
  cmd->add_option("--sample-steps", o->sample_steps, "DDIM steps of those grids")->capture_default_str();
  cmd->add_option("--seed", t.seed, "Seed of initialisation, scenes and noise")->capture_default_str();
  cmd->add_flag("--no-resume", o->no_resume, "Start afresh even if RUN_DIR has a checkpoint");
  add_dist_options(cmd, o->dist);
  runners.push_back({cmd, [o] { run_pretrain(*o); }});
}

}  // namespace gsoft::cli
