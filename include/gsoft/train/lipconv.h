#pragma once
// Training and certification of LipConvNets (the paper's robust-training recipe): SGD with
// momentum 0.9 and weight decay 5e-4, lr 0.1 divided by 10 at 50% and 75% of the steps (per
// iteration), cross-entropy, random crop with padding 4 and horizontal flips. After each epoch the
// test set is certified. The run directory holds checkpoint.safetensors (resumable at any step),
// metrics.jsonl, model.safetensors + lipconvnet.json of the last epoch, and best/ (best robust
// accuracy at the first eps, as the authors select).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gsoft/conv/lipconvnet.h"
#include "gsoft/data/images.h"
#include "gsoft/train/trainer.h"

namespace gsoft {

struct LipConvTrainOptions {
  int64_t epochs = 200;
  int64_t batch_size = 128;
  double lr = 0.1, momentum = 0.9, weight_decay = 5e-4;
  int64_t crop_padding = 4;
  bool flip = true;
  std::vector<double> eps{36.0 / 255, 72.0 / 255};
  int64_t eval_batch_size = 256;
  int64_t max_steps = 0;  // stop early after this many steps in all (0: no limit); for smoke tests
  uint64_t seed = 42;
  std::string out_dir;
  bool resume = true;
  // Data-parallel training (not owned; null: this process alone), as in TrainOptions: each rank
  // takes its share of every global batch (augmented as one batch), gradients are summed, the
  // certification is sharded and gathered, and rank 0 alone writes.
  dist::Group* group = nullptr;
};

struct LipConvEpoch {
  int64_t epoch, step;
  double train_loss, train_accuracy, train_seconds, eval_seconds;
  conv::CertifiedAccuracy test;
};

struct LipConvResult {
  bool interrupted = false;
  int64_t start_step = 0, end_step = 0;
  std::vector<LipConvEpoch> epochs;
};

// The input normalisation's Lipschitz constant, 1 / min(std): what certificates divide by.
double input_lipschitz(const data::ImageDataset& d);

LipConvResult train_lipconvnet(conv::LipConvNetImpl& net, const data::ImageDataset& train, const data::ImageDataset& test,
                               const LipConvTrainOptions& options, const TrainCallbacks& callbacks = {},
                               const std::function<void(const LipConvEpoch&)>& on_epoch = {});

// With a group, each rank certifies its share of `test` and every rank gets the whole result.
conv::CertifiedAccuracy evaluate_lipconvnet(conv::LipConvNetImpl& net, const data::ImageDataset& test,
                                            const std::vector<double>& eps, int64_t batch_size = 256,
                                            dist::Group* group = nullptr);

// lipconvnet.json (architecture and data statistics) and model.safetensors (parameters and power-
// iteration buffers), each written atomically; load rebuilds the network from them.
void save_lipconvnet(conv::LipConvNetImpl& net, const data::ImageDataset& data_like, const std::string& dir);
struct LoadedLipConvNet {
  conv::LipConvNet net{nullptr};
  std::string dataset;
  std::vector<double> mean, std;
};
LoadedLipConvNet load_lipconvnet(const std::string& dir);

}  // namespace gsoft
