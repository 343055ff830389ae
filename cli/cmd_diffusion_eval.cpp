// gsoft diffusion eval / train-evaluator: how well a pipeline draws what its prompts say, measured
// by a CNN trained here (the class) and by pixel rules (size, position, negative).
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
#include "gsoft/train/diffusion.h"
#include "progress.h"

namespace gsoft::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json accuracy_json(const diffusion::SceneAccuracy& a) {
  return {{"images", a.images}, {"class_accuracy", a.class_accuracy}, {"attribute_accuracy", a.attribute_accuracy},
          {"per_attribute", a.per_attribute}};
}

struct EvalCli {
  std::string model, adapter, evaluator, data, out_dir;
  int64_t n = 4, steps = 50, batch_size = 32;
  uint64_t seed = 0;
  double guidance = 5.0;
};

void run_eval(const EvalCli& o) {
  const std::string evaluator_dir = o.evaluator.empty() ? default_evaluator(o.model) : o.evaluator;
  diffusion::SceneClassifier classifier = diffusion::load_scene_classifier(evaluator_dir);
  diffusion::Pipeline p = diffusion::Pipeline::load(o.model);
  if (!o.adapter.empty()) io::load_adapter(o.adapter, *p.unet);
  std::vector<data::Prompt> prompts;
  const std::vector<data::Prompt> base = diffusion::evaluation_prompts();
  const std::vector<uint64_t> seeds = repeat_with_seeds(base, o.n, o.seed, prompts);
  std::vector<std::string> texts;
  for (const auto& q : prompts) texts.push_back(q.text());
  diffusion::SampleOptions so = sample_options(o.steps, o.guidance, o.batch_size);
  const auto total = static_cast<int64_t>(texts.size());
  const auto t0 = std::chrono::steady_clock::now();
  so.on_step = [&](int64_t done, int64_t step, int64_t steps) {
    if (step != steps) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int64_t finished = std::min(total, done + o.batch_size);
    std::cerr << "eval: " << finished << "/" << total << " images | " << s << " s | ETA "
              << format_duration(s / finished * (total - finished)) << std::endl;
  };
  const torch::Tensor images = diffusion::to_uint8(diffusion::sample_images(p, texts, seeds, so));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const diffusion::SceneAccuracy generated = diffusion::score_scenes(*classifier, images, prompts);
  const torch::Tensor real = diffusion::compose_for_prompts(fashion_items(o.data, false), prompts, o.seed);
  const diffusion::SceneAccuracy ceiling = diffusion::score_scenes(*classifier, real, prompts);
  if (!o.out_dir.empty()) {
    fs::create_directories(o.out_dir);
    io::write_png((fs::path(o.out_dir) / "generated.png").string(), diffusion::image_grid(images, 6 * o.n));
    io::write_png((fs::path(o.out_dir) / "real.png").string(), diffusion::image_grid(real.unsqueeze(1), 6 * o.n));
  }
  json j = accuracy_json(generated);
  j["model"] = o.model;
  j["adapter"] = o.adapter;
  j["steps"] = o.steps;
  j["guidance"] = o.guidance;
  j["prompts"] = base.size();
  j["sampling_seconds"] = seconds;
  j["real_test_compositions"] = accuracy_json(ceiling);
  std::cout << j.dump() << std::endl;
}

struct EvaluatorCli {
  std::string out, data;
  diffusion::ClassifierTrainOptions train;
};

void run_train_evaluator(const EvaluatorCli& o) {
  const data::ImageDataset train = fashion_items(o.data, true), test = fashion_items(o.data, false);
  torch::manual_seed(o.train.seed);
  diffusion::SceneClassifier model;
  std::cerr << "train-evaluator: " << train.size() << " training items, " << o.train.steps << " steps of "
            << o.train.batch_size << " scenes\n";
  const auto t0 = std::chrono::steady_clock::now();
  diffusion::train_scene_classifier(*model, train, o.train, console_callbacks("train-evaluator", o.train.log_every));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Every test item once, as a scene whose attributes are drawn from a fixed seed.
  const SceneBatch b = draw_scene_batch(test, test.size(), o.train.seed + 1, 0, 0.5, 0.25, {0, 0, 0});
  std::vector<data::Prompt> prompts;
  for (const auto& s : b.scenes) prompts.push_back(data::scene_prompt(s));
  const diffusion::SceneAccuracy a = diffusion::score_scenes(*model, b.canvases, prompts);
  const json info = {{"test_accuracy", a.class_accuracy}, {"test_scenes", a.images},
                     {"rule_attribute_accuracy", a.attribute_accuracy}, {"train_steps", o.train.steps},
                     {"batch_size", o.train.batch_size}, {"lr", o.train.lr}, {"seed", o.train.seed},
                     {"train_seconds", seconds}};
  diffusion::save_scene_classifier(*model, o.out, info);
  std::cout << info.dump() << std::endl;
}

}  // namespace

void setup_diffusion_eval(CLI::App* diffusion, Runners& runners) {
  auto o = std::make_shared<EvalCli>();
  auto* eval = diffusion->add_subcommand(
      "eval",
      "Sample the fixed prompt set (every class x large, small in each quadrant, large negative; --n images each) and\n"
      "report, as JSON, class accuracy (by the evaluator CNN) and attribute accuracy (every stated attribute right, by\n"
      "pixel rules), beside the same numbers for real test compositions of the same prompts (the ceiling).\n"
      "Example: gsoft diffusion eval --model models/fashion-diffusion");
  eval->add_option("--model", o->model, "Pipeline directory")->required()->check(CLI::ExistingDirectory);
  eval->add_option("--adapter", o->adapter, "UNet adapter directory")->check(CLI::ExistingDirectory);
  eval->add_option("--evaluator", o->evaluator, "Evaluator directory (default: MODEL/evaluator)");
  eval->add_option("--data", o->data, "Fashion-MNIST directory (the test items of the ceiling)");
  eval->add_option("--n", o->n, "Images per prompt")->capture_default_str()->check(CLI::Range(1, 1000));
  eval->add_option("--seed", o->seed, "Seed of the first image")->capture_default_str();
  eval->add_option("--steps", o->steps, "DDIM steps")->capture_default_str()->check(CLI::Range(1, 1000));
  eval->add_option("--guidance", o->guidance, "Classifier-free guidance scale")->capture_default_str();
  eval->add_option("--batch-size", o->batch_size, "Images denoised together")->capture_default_str()->check(CLI::PositiveNumber);
  eval->add_option("--out-dir", o->out_dir, "Also write generated.png and real.png grids here");
  runners.push_back({eval, [o] { run_eval(*o); }});

  auto e = std::make_shared<EvaluatorCli>();
  auto* te = diffusion->add_subcommand(
      "train-evaluator",
      "Train the evaluator CNN on scenes composed from Fashion-MNIST's training items (every size, quadrant and\n"
      "polarity) and report its accuracy on one scene of each test item. Writes model.safetensors + config.json.\n"
      "Example: gsoft diffusion train-evaluator --out models/fashion-diffusion/evaluator");
  te->add_option("--out", e->out, "Output directory")->required();
  te->add_option("--data", e->data, "Fashion-MNIST directory");
  te->add_option("--steps", e->train.steps, "Training steps")->capture_default_str()->check(CLI::PositiveNumber);
  te->add_option("--batch-size", e->train.batch_size, "Scenes per step")->capture_default_str()->check(CLI::PositiveNumber);
  te->add_option("--lr", e->train.lr, "Peak learning rate (cosine decay)")->capture_default_str();
  te->add_option("--seed", e->train.seed, "Seed")->capture_default_str();
  te->add_option("--log-every", e->train.log_every, "Progress every N steps")->capture_default_str();
  runners.push_back({te, [e] { run_train_evaluator(*e); }});
}

}  // namespace gsoft::cli
