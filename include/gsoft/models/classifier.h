#pragma once
// A sequence classifier ready to train, evaluate or predict: a Hugging Face checkpoint directory
// (config.json, weights, tokenizer.json), the task's labels and head, and optionally a trained
// adapter directory whose config.json (written by `gsoft train`) fixes labels and head.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "gsoft/models/encoder.h"
#include "gsoft/text/tokenizer.h"
#include "gsoft/train/batching.h"

namespace gsoft {

struct ClassifierOptions {
  // The task's classes (their names as in the data), or regression. Empty and false: the config's.
  std::vector<std::string> label_names;
  bool regression = false;
  std::optional<HeadKind> head;  // default: the config's gsoft_classifier_head, else Hugging Face's
  double head_dropout = -1;      // < 0: hidden_dropout_prob
  double dropout = -1;           // >= 0: the encoder's hidden and attention dropout instead of the config's
};

struct LoadedClassifier {
  SequenceClassifier model{nullptr};
  std::optional<Tokenizer> tokenizer;
  EncoderConfig config;               // as built: num_labels, label_names, head
  std::string config_json;            // config.json for the classifier (labels, architectures, head)
  std::vector<std::string> missing;   // tensors not in the checkpoint, freshly initialised (the head)
  bool regression() const { return config.problem_type == "regression"; }
  // How batches for this model are padded and whether it takes token type ids (not RoBERTa's).
  BatchOptions batch_options() const { return {tokenizer->pad_id(), regression(), config.type_vocab_size > 1}; }
  // The input length in tokens: `requested` (if > 0) capped at what the positions allow.
  int64_t input_length(int64_t requested = 0) const {
    return requested > 0 ? std::min(requested, config.max_tokens()) : config.max_tokens();
  }
};

// Throws std::runtime_error naming the file for a missing config.json or tokenizer.json, a
// tokenizer whose vocabulary is larger than the model's, or an adapter that does not fit.
LoadedClassifier load_classifier(const std::string& model_dir, const ClassifierOptions& options = {},
                                 const std::string& adapter_dir = "");

}  // namespace gsoft
