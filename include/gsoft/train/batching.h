#pragma once
// Tokenised examples and the padded batches a sequence classifier takes.
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "gsoft/data/tasks.h"
#include "gsoft/text/tokenizer.h"

namespace gsoft {

class SequenceClassifierImpl;

struct EncodedExample {
  std::vector<int64_t> ids;
  std::vector<int64_t> type_ids;
  float label = 0;
};

// Encodes every example (text and optional pair), truncated longest-first to max_length ids.
std::vector<EncodedExample> encode_dataset(const Tokenizer& tokenizer, const data::Dataset& dataset, int64_t max_length);

struct Batch {
  torch::Tensor input_ids;       // (B, T) int64, padded with pad_id to the longest example
  torch::Tensor attention_mask;  // (B, T) int64, 1 = token
  torch::Tensor token_type_ids;  // (B, T) int64; undefined when the model has one token type (RoBERTa)
  torch::Tensor labels;          // (B) int64 classes, or float for regression
};

struct BatchOptions {
  int64_t pad_id = 0;
  bool regression = false;
  bool token_types = true;  // false for models with type_vocab_size 1
};

Batch collate(const std::vector<EncodedExample>& examples, const std::vector<size_t>& indices, const BatchOptions& options);

// Logits (N, num_labels) for every example in input order, in eval mode without gradients.
// Batches group examples of similar length, so little time goes into padding.
torch::Tensor predict_logits(SequenceClassifierImpl& model, const std::vector<EncodedExample>& examples,
                             int64_t batch_size, const BatchOptions& options);

// Class indices (argmax) or, for one output, the regression values, as doubles.
std::vector<double> predictions_from_logits(const torch::Tensor& logits);

}  // namespace gsoft
