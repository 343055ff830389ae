// The trainer on a tiny random BERT: it learns a synthetic task through GSOFT adapters and changes
// nothing else, a resumed run repeats the uninterrupted run's losses, a non-finite loss stops
// without touching the checkpoint; AdamW against torch's own.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <random>

#include "gsoft/adapters/inject.h"
#include "gsoft/io/safetensors.h"
#include "gsoft/models/encoder.h"
#include "gsoft/train/optim.h"
#include "gsoft/train/trainer.h"
#include "support/helpers.h"
#include "support/tiny_model.h"

namespace {

using namespace gsoft;


// Label 1 when token 7 occurs: a task the frozen random encoder cannot solve without adaptation
// of what the first token attends to.
std::vector<EncodedExample> synthetic(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<EncodedExample> out;
  for (size_t i = 0; i < n; ++i) {
    EncodedExample e;
    const int len = 6 + static_cast<int>(rng() % 8);
    e.ids.push_back(1);  // [CLS]
    for (int t = 0; t < len; ++t) e.ids.push_back(8 + static_cast<int64_t>(rng() % 32));
    e.label = static_cast<float>(i % 2);
    if (e.label == 1) e.ids[1 + rng() % len] = 7;
    e.type_ids.assign(e.ids.size(), 0);
    out.push_back(e);
  }
  return out;
}

AdapterConfig gsoft_config() {
  AdapterConfig a;
  a.method = Method::GSOFT;
  a.block_size = 8;
  a.target_modules = {"query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"};
  a.modules_to_save = {"classifier"};
  return a;
}

SequenceClassifier make_model(const AdapterConfig& a, uint64_t seed = 7) {
  torch::manual_seed(seed);
  SequenceClassifier m(test::tiny_encoder_config(40));
  inject_adapters(*m, a);
  return m;
}

TrainData synthetic_data() {
  TrainData d;
  d.train = synthetic(256, 1);
  d.eval = synthetic(128, 2);
  d.metrics = {data::Metric::Accuracy};
  return d;
}

TEST(Trainer, LearnsThroughAdaptersAndChangesNothingElse) {
  const AdapterConfig a = gsoft_config();
  SequenceClassifier m = make_model(a);
  std::map<std::string, torch::Tensor> frozen_before, trainable_before;
  for (const auto& p : m->named_parameters())
    (p.value().requires_grad() ? trainable_before : frozen_before)[p.key()] = p.value().detach().clone();
  ASSERT_FALSE(frozen_before.empty());

  TrainOptions o;
  o.out_dir = test::scratch_dir("trainer_learns").string();
  o.epochs = 12;
  o.batch_size = 16;
  o.lr = 1e-2;
  o.eval_every = 64;
  o.log_every = 16;
  int steps_seen = 0;
  TrainCallbacks cb;
  cb.on_step = [&](const StepInfo& s) {
    ++steps_seen;
    EXPECT_EQ(s.total_steps, 12 * 16);
    EXPECT_GT(s.steps_per_second, 0);
  };
  const TrainResult r = train_classifier(*m, a, synthetic_data(), o, cb);
  EXPECT_EQ(steps_seen, 12 * 16);
  EXPECT_FALSE(r.interrupted);
  EXPECT_GE(r.best.metrics.at("accuracy"), 0.85) << "best eval at step " << r.best.step;

  for (const auto& p : m->named_parameters()) {
    auto f = frozen_before.find(p.key());
    if (f != frozen_before.end()) EXPECT_TRUE(torch::equal(f->second, p.value())) << p.key() << " changed";
    else EXPECT_FALSE(torch::equal(trainable_before.at(p.key()), p.value())) << p.key() << " did not train";
  }
  namespace fs = std::filesystem;
  for (const char* f : {"checkpoint.safetensors", "metrics.jsonl", "best/adapter_model.safetensors", "best/eval.json",
                        "adapter/adapter_config.json", "adapter/adapter_model.safetensors"})
    EXPECT_TRUE(fs::exists(fs::path(o.out_dir) / f)) << f;
  EXPECT_FALSE(fs::exists(fs::path(o.out_dir) / "best.tmp"));
}

TEST(Trainer, ResumedRunRepeatsTheUninterruptedLosses) {
  const AdapterConfig a = gsoft_config();
  TrainOptions o;
  o.max_steps = 10;
  o.batch_size = 16;
  o.lr = 5e-3;
  o.warmup_steps = 3;
  o.checkpoint_every = 100;  // only the stop and the end write checkpoints
  const TrainData d = synthetic_data();

  o.out_dir = test::scratch_dir("trainer_whole").string();
  SequenceClassifier whole = make_model(a);
  const TrainResult full = train_classifier(*whole, a, d, o);
  ASSERT_EQ(full.losses.size(), 10u);

  o.out_dir = test::scratch_dir("trainer_resumed").string();
  SequenceClassifier first = make_model(a);
  TrainCallbacks stop_at_4;
  int steps = 0;
  stop_at_4.on_step = [&](const StepInfo&) { ++steps; };
  stop_at_4.should_stop = [&] { return steps == 4; };
  const TrainResult part = train_classifier(*first, a, d, o, stop_at_4);
  EXPECT_TRUE(part.interrupted);
  ASSERT_EQ(part.losses.size(), 4u);
  // The same frozen base (a pretrained checkpoint in real use), but a different head and
  // process RNG state: the checkpoint, not the process, must decide what follows.
  SequenceClassifier second = make_model(a);
  {
    torch::NoGradGuard g;
    second->named_parameters()["classifier.weight"].normal_();
  }
  torch::manual_seed(12345);
  const TrainResult rest = train_classifier(*second, a, d, o);
  EXPECT_EQ(rest.start_step, 4);
  ASSERT_EQ(rest.losses.size(), 6u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(part.losses[i], full.losses[i]) << "step " << i + 1;
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(rest.losses[i], full.losses[4 + i]) << "step " << i + 5;
  auto wp = whole->named_parameters(), sp = second->named_parameters();
  for (const auto& p : wp) EXPECT_TRUE(torch::equal(p.value(), sp[p.key()])) << p.key();

  // Other options cannot silently continue that run.
  o.lr = 1e-3;
  try {
    SequenceClassifier third = make_model(a);
    train_classifier(*third, a, d, o);
    FAIL() << "expected an error";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("lr = 0.005"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("this run has lr = 0.001"), std::string::npos) << e.what();
  }
}

TEST(Trainer, NonFiniteLossStopsAndKeepsTheLastCheckpoint) {
  const AdapterConfig a = gsoft_config();
  SequenceClassifier m = make_model(a);
  TrainOptions o;
  o.out_dir = test::scratch_dir("trainer_nan").string();
  o.max_steps = 10;
  o.batch_size = 8;
  o.checkpoint_every = 2;
  TrainCallbacks cb;
  cb.on_step = [&](const StepInfo& s) {
    if (s.step == 3) {
      torch::NoGradGuard g;
      m->named_parameters()["classifier.weight"].fill_(std::numeric_limits<float>::quiet_NaN());
    }
  };
  try {
    train_classifier(*m, a, synthetic_data(), o, cb);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("step 4: loss is nan"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("checkpoint.safetensors"), std::string::npos) << e.what();
  }
  const auto f = io::read_safetensors(o.out_dir + "/checkpoint.safetensors");
  EXPECT_EQ(f.metadata.at("step"), "2");
  EXPECT_FALSE(torch::isnan(f.tensors.at("param.classifier.weight")).any().item<bool>());
}

TEST(Optim, AdamWMatchesTorch) {
  torch::manual_seed(3);
  const torch::Tensor init = torch::randn({5, 4}, torch::kDouble), target = torch::randn({5, 4}, torch::kDouble);
  torch::Tensor a = init.clone().requires_grad_(true), b = init.clone().requires_grad_(true);
  AdamW mine({ParamGroup{"g", {{"w", a}}, 0.05, 0.1}});
  torch::optim::AdamW theirs({b}, torch::optim::AdamWOptions(0.05).weight_decay(0.1));
  for (int s = 0; s < 6; ++s) {
    const double lr_factor = linear_schedule(s, 2, 6);
    for (auto& group : theirs.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(0.05 * lr_factor);
    mine.zero_grad();
    theirs.zero_grad();
    (a - target).pow(2).sum().backward();
    (b - target).pow(2).sum().backward();
    mine.step(lr_factor);
    theirs.step();
  }
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-12);
  // State round trip.
  AdamW copy({ParamGroup{"g", {{"w", a}}, 0.05, 0.1}});
  copy.load_state(mine.state());
  EXPECT_EQ(copy.steps(), 6);
  EXPECT_THROW(copy.load_state({}), std::invalid_argument);
}

TEST(Optim, ScheduleAndClipping) {
  EXPECT_DOUBLE_EQ(linear_schedule(0, 4, 10), 0.25);
  EXPECT_DOUBLE_EQ(linear_schedule(3, 4, 10), 1.0);
  EXPECT_DOUBLE_EQ(linear_schedule(4, 4, 10), 1.0);
  EXPECT_DOUBLE_EQ(linear_schedule(7, 4, 10), 0.5);
  EXPECT_DOUBLE_EQ(linear_schedule(10, 4, 10), 0.0);
  torch::Tensor p = torch::zeros({2}, torch::kDouble).requires_grad_(true);
  p.mutable_grad() = torch::tensor({3.0, 4.0}, torch::kDouble);
  EXPECT_DOUBLE_EQ(clip_grad_norm({p}, 1.0), 5.0);
  EXPECT_NEAR(p.grad().norm().item<double>(), 1.0, 1e-6);
}

}  // namespace
