#pragma once
// Fine-tunes a sequence classifier whose adapters are already injected (only parameters that
// require grad train): AdamW with linear warm-up and decay, gradient clipping, separate learning
// rates for adapters and head, evaluation every N steps keeping the best, a JSONL metrics log,
// and checkpoints from which a resumed run continues exactly (same losses as an uninterrupted one).
//
// out_dir holds:
//   checkpoint.safetensors  trainable tensors, optimiser, RNG state, step (written atomically)
//   metrics.jsonl           {"type":"train",...} every log_every steps, {"type":"eval",...}
//   best/                   the adapter (PEFT layout, head included) at the best evaluation
//   adapter/                the adapter at the end of training
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gsoft/adapters/config.h"
#include "gsoft/data/tasks.h"
#include "gsoft/train/batching.h"

namespace gsoft {

class SequenceClassifierImpl;
namespace dist {
class Group;
}

struct TrainOptions {
  int64_t epochs = 3;
  int64_t max_steps = 0;         // > 0: stop after this many steps instead of `epochs`
  int64_t batch_size = 32;
  double lr = 8e-4;              // adapters (all weights for full fine-tuning)
  double head_lr = 0;            // the classifier head; 0: lr
  double weight_decay = 0;       // decoupled; never on biases and LayerNorm
  int64_t warmup_steps = -1;     // < 0: warmup_ratio of the total
  double warmup_ratio = 0.06;
  double max_grad_norm = 1.0;    // 0: no clipping
  int64_t eval_every = 0;        // 0: after every epoch (and always at the end)
  int64_t checkpoint_every = 0;  // 0: at every evaluation (and always at the end or on stop)
  int64_t log_every = 10;
  uint64_t seed = 42;
  std::string out_dir;
  bool resume = true;            // continue from out_dir/checkpoint.safetensors when present
  // Data-parallel training (not owned; null: this process alone). batch_size stays the global
  // batch: each rank takes its contiguous share of every batch, gradients are summed across ranks,
  // evaluation is sharded and gathered, and only rank 0 writes to out_dir.
  dist::Group* group = nullptr;
};

struct TrainData {
  std::vector<EncodedExample> train, eval;
  BatchOptions batch;
  std::vector<data::Metric> metrics;  // the first selects the best evaluation
};

struct StepInfo {
  int64_t step = 0, total_steps = 0, epoch = 0, epochs = 0;  // step counts from 1; epochs 0: no epochs
  double loss = 0, lr = 0, grad_norm = 0, steps_per_second = 0, eta_seconds = 0;
};

struct EvalInfo {
  int64_t step = -1;
  double loss = 0;
  std::map<std::string, double> metrics;
  bool best = false;
};

struct TrainCallbacks {
  std::function<void(const StepInfo&)> on_step;
  std::function<void(const EvalInfo&)> on_eval;
  std::function<void(const std::string&)> on_event;  // "resumed from step 40 of 90", "checkpoint at step 60"
  std::function<bool()> should_stop;                 // polled after each step; true saves and returns
};

struct TrainResult {
  bool interrupted = false;
  int64_t start_step = 0, end_step = 0, total_steps = 0;
  std::vector<double> losses;  // the steps taken in this call
  EvalInfo best;               // step -1 without evaluation data
  double train_seconds = 0;    // this call's training steps, evaluation excluded
  int64_t all_reduce_bytes = 0;   // gradient and loss bytes summed across ranks in this call (0 alone)
  double all_reduce_seconds = 0;  // time spent in those collectives
};

// Throws std::runtime_error on a non-finite loss ("step N: loss is nan ..."), leaving the last
// checkpoint as it was, and std::invalid_argument for bad options or a checkpoint written with
// different options (naming the option, the checkpoint's value and the requested one).
TrainResult train_classifier(SequenceClassifierImpl& model, const AdapterConfig& adapter, const TrainData& data,
                             const TrainOptions& options, const TrainCallbacks& callbacks = {});

// Evaluates: mean loss and the metrics over `examples`.
// With a group, each rank predicts its share and every rank gets the metrics of all `examples`.
EvalInfo evaluate_classifier(SequenceClassifierImpl& model, const std::vector<EncodedExample>& examples,
                             const BatchOptions& batch, const std::vector<data::Metric>& metrics, int64_t batch_size = 64,
                             dist::Group* group = nullptr);

}  // namespace gsoft
