#pragma once
// The resumable state of a training run (internal), shared by fine-tuning and pretraining: the
// trainable tensors, the AdamW moments, the CPU RNG state, the step and the options that a resumed
// run must share, in one safetensors file written atomically.
#include <torch/types.h>

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "gsoft/train/optim.h"

namespace gsoft::train_detail {

void save_run_state(const std::string& path, const std::map<std::string, torch::Tensor>& params, const Optimizer& optimizer,
                    int64_t step, const nlohmann::json& options, const std::map<std::string, std::string>& extra = {});

struct RunState {
  int64_t step = 0;
  std::map<std::string, std::string> metadata;
};

// Copies the saved tensors into `params`, restores the optimiser and the RNG. Throws
// std::invalid_argument naming the option whose value differs from `options`, or the tensor
// that is missing or has another shape.
RunState load_run_state(const std::string& path, const std::map<std::string, torch::Tensor>& params, Optimizer& optimizer,
                        const nlohmann::json& options);

// Where a run in `dir` starts: with `resume` and a dir/checkpoint.safetensors, the checkpoint's
// step (state and optimiser restored, dir/metrics.jsonl trimmed to it, on_event told "resumed from
// step N of M"); otherwise 0, with dir/metrics.jsonl removed. Only a `writer` (rank 0 of a
// data-parallel run) touches metrics.jsonl.
int64_t start_or_resume(const std::string& dir, bool resume, const std::map<std::string, torch::Tensor>& state,
                        Optimizer& optimizer, const nlohmann::json& options, int64_t max_steps,
                        const std::function<void(const std::string&)>& on_event, bool writer = true);

// Throws std::runtime_error when the loss of step `step` (counting from 1) is NaN or infinite,
// naming `what` was stopped and the last checkpoint that remains.
void check_finite_loss(double loss, int64_t step, const std::string& what, const std::string& checkpoint);

// The order of the examples in `epoch`: a shuffle seeded by (seed, epoch) alone, so a resumed run
// visits the same batches.
std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch);

// A seed for one random stream of one step: (seed, step, stream) mixed by std::seed_seq, so runs
// that draw each step's randomness from it alone resume exactly.
uint64_t step_seed(uint64_t seed, int64_t step, uint32_t stream);

// metrics.jsonl: one JSON object appended per line; on resume, the lines of steps after the
// checkpoint are dropped so the log reads like one uninterrupted run.
void append_jsonl(const std::string& path, const nlohmann::json& line);
void trim_metrics(const std::string& path, int64_t step);

}  // namespace gsoft::train_detail
