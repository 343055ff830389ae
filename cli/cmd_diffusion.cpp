// gsoft diffusion: the text-to-image pipeline's commands. This file holds the group and its
// small commands (info, sample); pretrain and eval have their own files.
#include <torch/torch.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "diffusion_common.h"
#include "gsoft/diffusion/pipeline.h"
#include "gsoft/io/adapter_io.h"
#include "gsoft/io/atomic_file.h"

namespace gsoft::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int64_t count_params(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

void run_info(const std::string& dir) {
  diffusion::Pipeline p = diffusion::Pipeline::load(dir);
  const auto& u = p.unet->config;
  const auto& t = p.text_encoder->config;
  std::string blocks;
  for (size_t i = 0; i < u.block_out_channels.size(); ++i)
    blocks += (i ? ", " : "") + u.down_block_types[i] + "(" + std::to_string(u.block_out_channels[i]) + ")";
  std::cout << "pipeline     " << dir << "\n"
            << "unet         " << u.in_channels << "x" << u.sample_size << "x" << u.sample_size << " -> " << u.out_channels
            << " channels; " << blocks << "; " << u.layers_per_block[0] << " layer(s) per block; cross-attention dim "
            << u.cross_attention_dim << "; " << count_params(*p.unet) << " parameters\n"
            << "text encoder " << t.model_type << ", " << t.num_hidden_layers << " layers of " << t.hidden_size << ", "
            << t.num_attention_heads << " heads; " << count_params(*p.text_encoder) << " parameters\n"
            << "tokenizer    " << p.tokenizer->model_type() << ", " << p.tokenizer->vocab_size() << " ids, prompts of "
            << p.max_prompt_tokens << " tokens\n"
            << "scheduler    " << p.scheduler.class_name << ", " << p.scheduler.num_train_timesteps << " steps, "
            << p.scheduler.beta_schedule << " betas " << p.scheduler.beta_start << ".." << p.scheduler.beta_end << "\n";
  const bool evaluator = fs::exists(fs::path(default_evaluator(dir)) / "config.json");
  const json j = {{"unet_params", count_params(*p.unet)},
                  {"text_encoder_params", count_params(*p.text_encoder)},
                  {"sample_size", u.sample_size},
                  {"block_out_channels", u.block_out_channels},
                  {"vocab_size", p.tokenizer->vocab_size()},
                  {"evaluator", evaluator}};
  std::cout << j.dump() << std::endl;
}

struct SampleCli {
  std::string model, adapter, out, out_dir;
  std::vector<std::string> prompts;
  int64_t n = 4, steps = 50, batch_size = 32;
  uint64_t seed = 0;
  double guidance = 5.0;
  bool any_prompt = false;
};

void run_sample(const SampleCli& o) {
  if (o.out.empty() == o.out_dir.empty()) throw CLI::ValidationError("--out/--out-dir", "give exactly one of them");
  check_prompts(o.prompts, o.any_prompt);
  diffusion::Pipeline p = diffusion::Pipeline::load(o.model);
  if (!o.adapter.empty()) {
    const InjectionReport r = io::load_adapter(o.adapter, *p.unet);
    std::cerr << "sample: adapter " << o.adapter << " on " << r.adapted.size() << " modules\n";
  }
  std::vector<std::string> prompts;
  const std::vector<uint64_t> seeds = repeat_with_seeds(o.prompts, o.n, o.seed, prompts);
  diffusion::SampleOptions so = sample_options(o.steps, o.guidance, o.batch_size);
  const auto total = static_cast<int64_t>(prompts.size());
  so.on_step = [&](int64_t done, int64_t step, int64_t steps) {
    if (step % 10 == 0 || step == steps)
      std::cerr << "sample: images " << done + 1 << "-" << std::min(total, done + o.batch_size) << " of " << total
                << " | step " << step << "/" << steps << std::endl;
  };
  const auto t0 = std::chrono::steady_clock::now();
  const torch::Tensor images = diffusion::to_uint8(diffusion::sample_images(p, prompts, seeds, so));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!o.out.empty()) {
    io::write_png(o.out, diffusion::image_grid(images, o.n));
  } else {
    fs::create_directories(o.out_dir);
    std::string lines;
    for (int64_t i = 0; i < total; ++i) {
      char name[32];
      std::snprintf(name, sizeof name, "%05lld.png", static_cast<long long>(i));
      write_image_png((fs::path(o.out_dir) / name).string(), images, i);
      lines += json({{"file", name}, {"prompt", prompts[static_cast<size_t>(i)]}, {"seed", seeds[static_cast<size_t>(i)]}}).dump() + "\n";
    }
    io::write_file_atomic((fs::path(o.out_dir) / "samples.jsonl").string(), lines);
  }
  std::cout << json({{"images", total}, {"seconds", seconds}, {"steps", o.steps}, {"guidance", o.guidance},
                     {"out", o.out.empty() ? o.out_dir : o.out}})
                   .dump()
            << std::endl;
}

}  // namespace

void setup_diffusion(CLI::App& app, Runners& runners) {
  auto* diff = app.add_subcommand(
      "diffusion",
      "Text-to-image diffusion in diffusers' pipeline layout (pixel space, 32x32 grey scenes of Fashion-MNIST items):\n"
      "pretrain a pipeline, sample from it (with an adapter), evaluate it, describe it. See docs/diffusion.md.");
  diff->require_subcommand(1);

  auto info_dir = std::make_shared<std::string>();
  auto* info = diff->add_subcommand("info", "The pipeline's parts, sizes and parameter counts; a JSON object last");
  info->add_option("DIR", *info_dir, "Pipeline directory (model_index.json, unet/, text_encoder/, tokenizer/, scheduler/)")
      ->required()
      ->check(CLI::ExistingDirectory);
  runners.push_back({info, [info_dir] { run_info(*info_dir); }});

  auto o = std::make_shared<SampleCli>();
  auto* sample = diff->add_subcommand(
      "sample",
      "DDIM sampling with classifier-free guidance; deterministic for a seed (image j of prompt i uses seed + i*n + j).\n"
      "Prompts follow the scene grammar: " + data::prompt_grammar() + ".\n"
      "Examples:\n"
      "  gsoft diffusion sample --model models/fashion-diffusion --prompt \"a photo of a large sneaker\" \\\n"
      "      --prompt \"a photo of a small bag at the top left, negative\" --n 8 --out grid.png\n"
      "  gsoft diffusion sample --model M --adapter runs/db/adapter --prompt \"a photo of a large sks sneaker\" --out-dir imgs");
  sample->add_option("--model", o->model, "Pipeline directory")->required()->check(CLI::ExistingDirectory);
  sample->add_option("--adapter", o->adapter, "UNet adapter directory (PEFT layout)")->check(CLI::ExistingDirectory);
  sample->add_option("--prompt", o->prompts, "Prompt (repeatable); \"\" is the unconditional one")->required();
  sample->add_option("--n", o->n, "Images per prompt")->capture_default_str()->check(CLI::Range(1, 10000));
  sample->add_option("--seed", o->seed, "Seed of the first image")->capture_default_str();
  sample->add_option("--steps", o->steps, "DDIM steps")->capture_default_str()->check(CLI::Range(1, 1000));
  sample->add_option("--guidance", o->guidance, "Classifier-free guidance scale (1: none)")->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  sample->add_option("--batch-size", o->batch_size, "Images denoised together")->capture_default_str()->check(CLI::PositiveNumber);
  sample->add_option("--out", o->out, "One PNG grid: a row per prompt");
  sample->add_option("--out-dir", o->out_dir, "A directory of 00000.png, 00001.png, ... and samples.jsonl");
  sample->add_flag("--any-prompt", o->any_prompt, "Do not check the prompts against the scene grammar");
  runners.push_back({sample, [o] { run_sample(*o); }});

  setup_diffusion_pretrain(diff, runners);
  setup_diffusion_eval(diff, runners);
  setup_diffusion_dreambooth(diff, runners);
  setup_diffusion_compare(diff, runners);
}

}  // namespace gsoft::cli
