#include "gsoft/diffusion/evaluator.h"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>

#include "gsoft/core/error.h"
#include "gsoft/io/atomic_file.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/train/diffusion.h"
#include "gsoft/train/optim.h"
#include "io/file_util.h"

namespace gsoft::diffusion {
namespace fs = std::filesystem;
namespace nn = torch::nn;

SceneClassifierImpl::SceneClassifierImpl() {
  auto c = [](int64_t in, int64_t out) { return nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1)); };
  body_ = register_module("body", nn::Sequential(c(1, 32), nn::ReLU(), c(32, 32), nn::ReLU(), nn::MaxPool2d(2),
                                                 c(32, 64), nn::ReLU(), c(64, 64), nn::ReLU(), nn::MaxPool2d(2),
                                                 c(64, 128), nn::ReLU(), nn::MaxPool2d(2)));
  fc_ = register_module("fc", nn::Linear(128 * 16, 256));
  dropout_ = register_module("dropout", nn::Dropout(0.3));
  out_ = register_module("out", nn::Linear(256, 10));
}

torch::Tensor SceneClassifierImpl::features(const torch::Tensor& canvases) {
  const torch::Tensor c = canvases.dim() == 3 ? canvases.unsqueeze(1) : canvases;
  GSOFT_CHECK(c.dim() == 4 && c.size(1) == 1 && c.size(2) == data::kSceneSide && c.size(3) == data::kSceneSide &&
                  c.scalar_type() == torch::kUInt8,
              "scene classifier: expected (B, 32, 32) uint8 canvases, got ", format_shape(canvases.sizes()), " ",
              canvases.scalar_type());
  // The rules undo polarity and size first, so the network only has to tell the class.
  const torch::Tensor x = data::canonical_scenes(c).unsqueeze(1).to(torch::kFloat32) / 127.5 - 1.0;
  return torch::relu(fc_(body_->forward(x).flatten(1)));
}

torch::Tensor SceneClassifierImpl::forward(const torch::Tensor& canvases) { return out_(dropout_(features(canvases))); }

void train_scene_classifier(SceneClassifierImpl& model, const data::ImageDataset& train, const ClassifierTrainOptions& o,
                            const TrainCallbacks& cb) {
  GSOFT_CHECK(o.steps >= 1 && o.batch_size >= 1, "classifier training: steps and batch_size must be positive");
  std::vector<std::pair<std::string, torch::Tensor>> params;
  std::vector<torch::Tensor> all;
  for (const auto& p : model.named_parameters()) params.emplace_back(p.key(), p.value()), all.push_back(p.value());
  AdamW opt({ParamGroup{"all", params, o.lr, 1e-4}});
  model.train();
  const data::CaptionDropout none{0, 0, 0};
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < o.steps; ++step) {
    const SceneBatch b = draw_scene_batch(train, o.batch_size, o.seed, step, 0.5, 0.25, none);
    std::vector<int64_t> labels;
    for (const auto& s : b.scenes) labels.push_back(s.label);
    const torch::Tensor loss = torch::nn::functional::cross_entropy(model.forward(b.canvases), torch::tensor(labels));
    opt.zero_grad();
    loss.backward();
    const double factor = 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(o.steps)));
    opt.step(factor);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    StepInfo info{step + 1, o.steps, 0, 0, loss.item<double>(), o.lr * factor, 0, (step + 1) / std::max(elapsed, 1e-9), 0};
    info.eta_seconds = static_cast<double>(o.steps - step - 1) / std::max(info.steps_per_second, 1e-9);
    if (cb.on_step) cb.on_step(info);
    if (cb.should_stop && cb.should_stop()) throw std::runtime_error("classifier training interrupted at step " + std::to_string(step + 1));
  }
  model.eval();
}

SceneAccuracy score_scenes(SceneClassifierImpl& classifier, const torch::Tensor& canvases,
                           const std::vector<data::Prompt>& prompts) {
  const torch::Tensor c = canvases.dim() == 4 ? canvases.squeeze(1) : canvases;
  GSOFT_CHECK(c.dim() == 3 && c.size(0) == static_cast<int64_t>(prompts.size()), "score_scenes: ", c.size(0),
              " canvases for ", prompts.size(), " prompts");
  torch::NoGradGuard g;
  classifier.eval();
  std::vector<torch::Tensor> logits;
  for (int64_t i = 0; i < c.size(0); i += 256) logits.push_back(classifier.forward(c.narrow(0, i, std::min<int64_t>(256, c.size(0) - i))));
  const torch::Tensor pred = logits.empty() ? torch::empty({0}, torch::kLong) : torch::cat(logits).argmax(1);
  SceneAccuracy a;
  a.images = c.size(0);
  int64_t right_class = 0, right_all = 0, right_joint = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> per;  // attribute -> (stated, right)
  for (int64_t i = 0; i < a.images; ++i) {
    const data::Prompt& p = prompts[static_cast<size_t>(i)];
    const data::SceneAttributes m = data::measure_attributes(c[i]);
    const bool class_ok = p.label && pred[i].item<int64_t>() == *p.label, attributes_ok = data::attributes_match(p, m);
    right_class += class_ok;
    right_all += attributes_ok;
    right_joint += class_ok && attributes_ok;
    auto count = [&](const char* k, bool ok) { per[k].first++, per[k].second += ok; };
    count("negative", p.negative == m.negative);
    if (p.size) count("size", *p.size == m.size);
    if (p.quadrant) count("position", m.size == data::ItemSize::Small && *p.quadrant == m.quadrant);
  }
  const double n = std::max<int64_t>(1, a.images);
  a.class_accuracy = right_class / n;
  a.attribute_accuracy = right_all / n;
  a.joint_accuracy = right_joint / n;
  for (const auto& [k, v] : per) a.per_attribute[k] = static_cast<double>(v.second) / std::max<int64_t>(1, v.first);
  return a;
}

torch::Tensor compose_for_prompts(const data::ImageDataset& items, const std::vector<data::Prompt>& prompts, uint64_t seed) {
  std::vector<std::vector<int64_t>> by_class(10);
  const auto labels = items.labels.contiguous();
  for (int64_t i = 0; i < items.size(); ++i) by_class.at(static_cast<size_t>(labels[i].item<int64_t>())).push_back(i);
  std::mt19937_64 rng(seed);
  std::vector<torch::Tensor> out;
  for (const auto& p : prompts) {
    GSOFT_CHECK(p.label && p.size, "compose_for_prompts: prompt \"", p.text(), "\" must state the class and the size");
    const auto& pool = by_class[static_cast<size_t>(*p.label)];
    GSOFT_CHECK(!pool.empty(), "compose_for_prompts: no item of class ", *p.label);
    data::Scene s;
    s.label = *p.label;
    s.size = *p.size;
    s.quadrant = p.quadrant.value_or(data::Quadrant::TopLeft);
    s.negative = p.negative;
    out.push_back(data::compose_scene(items.images[pool[rng() % pool.size()]][0], s));
  }
  return torch::stack(out);
}

std::vector<data::Prompt> evaluation_prompts() {
  std::vector<data::Prompt> out;
  for (int64_t label = 0; label < 10; ++label) {
    data::Prompt p;
    p.label = label;
    p.size = data::ItemSize::Large;
    out.push_back(p);
    for (data::Quadrant q : data::all_quadrants()) {
      data::Prompt s = p;
      s.size = data::ItemSize::Small;
      s.quadrant = q;
      out.push_back(s);
    }
    data::Prompt n = p;
    n.negative = true;
    out.push_back(n);
  }
  return out;
}

SubjectSimilarity subject_similarity(SceneClassifierImpl& classifier, const torch::Tensor& images, const torch::Tensor& views) {
  auto flat = [](const torch::Tensor& t) { return t.dim() == 4 ? t.squeeze(1) : t; };
  const torch::Tensor a = flat(images), v = flat(views);
  GSOFT_CHECK(a.dim() == 3 && v.dim() == 3 && a.size(0) >= 1 && v.size(0) >= 1, "subject_similarity: expected (N, 32, 32) "
              "images and views, got ", format_shape(images.sizes()), " and ", format_shape(views.sizes()));
  torch::NoGradGuard g;
  classifier.eval();
  const torch::Tensor fa = torch::nn::functional::normalize(classifier.features(a), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const torch::Tensor fv = torch::nn::functional::normalize(classifier.features(v), torch::nn::functional::NormalizeFuncOptions().dim(1));
  SubjectSimilarity s;
  s.feature_cosine = fa.matmul(fv.t()).mean().item<double>();
  auto centred = [](const torch::Tensor& x) {
    torch::Tensor c = x.narrow(1, 2, 28).narrow(2, 2, 28).reshape({x.size(0), -1}).to(torch::kFloat64);
    c = c - c.mean(1, true);
    return c / c.norm(2, 1, true).clamp_min(1e-9);
  };
  s.ncc = centred(a).matmul(centred(v).t()).amax(1).mean().item<double>();
  return s;
}

std::vector<data::Prompt> contextual_prompts(int64_t label, const std::string& token) {
  std::vector<data::Prompt> out;
  data::Prompt p;
  p.label = label;
  p.token = token;
  p.size = data::ItemSize::Small;
  for (data::Quadrant q : data::all_quadrants()) {
    p.quadrant = q;
    out.push_back(p);
  }
  data::Prompt n = p;
  n.size = data::ItemSize::Large;
  n.quadrant.reset();
  n.negative = true;
  out.push_back(n);
  p.quadrant = data::Quadrant::TopLeft;
  p.negative = true;
  out.push_back(p);
  return out;
}

SubjectEval evaluate_subject(Pipeline& pipeline, SceneClassifierImpl& classifier, const torch::Tensor& views, int64_t label,
                             const std::string& token, const SubjectEvalOptions& o) {
  SampleOptions so;
  so.steps = o.steps;
  so.guidance = o.guidance;
  so.batch_size = o.batch_size;
  data::Prompt base;
  base.label = label;
  base.size = data::ItemSize::Large;
  base.token = token;
  std::vector<data::Prompt> prompts;
  for (int64_t i = 0; i < o.base_images; ++i) prompts.push_back(base);
  for (const auto& c : contextual_prompts(label, token))
    for (int64_t i = 0; i < o.context_images; ++i) prompts.push_back(c);
  std::vector<std::string> texts;
  std::vector<uint64_t> seeds;
  for (size_t i = 0; i < prompts.size(); ++i) {
    texts.push_back(prompts[i].text());
    seeds.push_back(o.seed + i);
  }
  const torch::Tensor images = to_uint8(sample_images(pipeline, texts, seeds, so));
  SubjectEval e;
  e.base_images = images.narrow(0, 0, o.base_images);
  e.context_images = images.narrow(0, o.base_images, images.size(0) - o.base_images);
  const std::vector<data::Prompt> base_prompts(prompts.begin(), prompts.begin() + o.base_images);
  const std::vector<data::Prompt> context_prompts(prompts.begin() + o.base_images, prompts.end());
  e.similarity = subject_similarity(classifier, e.base_images, views);
  e.base_prompt = score_scenes(classifier, e.base_images, base_prompts);
  e.contextual = score_scenes(classifier, e.context_images, context_prompts);
  e.prompt_fidelity = e.contextual.joint_accuracy;
  return e;
}

void save_scene_classifier(SceneClassifierImpl& model, const std::string& dir, const nlohmann::json& info) {
  fs::create_directories(dir);
  std::map<std::string, torch::Tensor> t;
  for (const auto& p : model.named_parameters()) t[p.key()] = p.value().detach().contiguous();
  io::write_safetensors((fs::path(dir) / "model.safetensors").string(), t, {{"format", "pt"}});
  nlohmann::json config = info;
  config["architecture"] = "gsoft-scene-cnn";
  config["classes"] = data::fashion_class_names();
  io::write_file_atomic((fs::path(dir) / "config.json").string(), config.dump(2) + "\n");
}

SceneClassifier load_scene_classifier(const std::string& dir) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  const nlohmann::json config = io::parse_json(io::read_text_file(config_path), config_path);
  const std::string arch = io::json_field<std::string>(config, "architecture", "", config_path);
  if (arch != "gsoft-scene-cnn")
    throw std::runtime_error(config_path + ": architecture is '" + arch + "', expected gsoft-scene-cnn");
  SceneClassifier m;
  const std::string weights = (fs::path(dir) / "model.safetensors").string();
  load_module_tensors(*m, io::read_safetensors(weights).tensors, weights);
  m->eval();
  return m;
}

io::GrayImage image_grid(const torch::Tensor& images, int64_t columns) {
  GSOFT_CHECK(images.dim() == 4 && images.size(1) == 1 && images.scalar_type() == torch::kUInt8 && images.size(0) > 0,
              "image_grid: expected (N, 1, H, W) uint8 images, got ", format_shape(images.sizes()));
  GSOFT_CHECK(columns >= 1, "image_grid: columns must be positive, got ", columns);
  const int64_t n = images.size(0), h = images.size(2), w = images.size(3), gap = 2;
  const int64_t cols = std::min(columns, n), rows = (n + cols - 1) / cols;
  io::GrayImage g;
  g.width = cols * w + (cols + 1) * gap;
  g.height = rows * h + (rows + 1) * gap;
  g.pixels.assign(static_cast<size_t>(g.width * g.height), 128);
  const torch::Tensor c = images.contiguous();
  const uint8_t* src = c.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r0 = gap + (i / cols) * (h + gap), c0 = gap + (i % cols) * (w + gap);
    for (int64_t y = 0; y < h; ++y)
      std::copy(src + (i * h + y) * w, src + (i * h + y + 1) * w, g.pixels.begin() + (r0 + y) * g.width + c0);
  }
  return g;
}

}  // namespace gsoft::diffusion
