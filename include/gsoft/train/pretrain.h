#pragma once
// Masked-language-model pretraining of a BERT-style encoder (BERT's recipe: 15% of the tokens are
// predicted; of those 80% become [MASK], 10% a random token, 10% stay). Checkpoints, resume,
// progress and data-parallel ranks work as in train_classifier. Each step's masks come from a
// generator seeded by (seed, step) alone, so they do not depend on the rank count, on dropout or
// on where a run was resumed.
#include <string>
#include <vector>

#include "gsoft/text/tokenizer.h"
#include "gsoft/train/trainer.h"

namespace gsoft {

class MaskedLMImpl;
struct WordVectors;

struct PretrainOptions {
  int64_t max_steps = 2000;     // the length of the learning-rate schedule
  int64_t stop_at_step = 0;     // end the run after this step (0: at max_steps); not part of the
                                // schedule, so a run may be continued past it later
  int64_t batch_size = 64;
  double lr = 5e-4;
  double weight_decay = 0.01;
  double warmup_ratio = 0.05;
  double max_grad_norm = 1.0;
  double mask_probability = 0.15;
  int64_t log_every = 50;
  int64_t checkpoint_every = 500;
  uint64_t seed = 42;
  std::string out_dir;   // checkpoint.safetensors, metrics.jsonl
  bool resume = true;
  // Data-parallel training (not owned; null: this process alone), as in TrainOptions: every rank
  // draws the masks of the whole global batch and trains on its rows; rank 0 alone writes out_dir.
  dist::Group* group = nullptr;
};

// Texts tokenised without special tokens and packed into sequences of seq_len ids:
// [CLS] tokens... [SEP], a text continuing into the next sequence when it does not fit.
std::vector<std::vector<int64_t>> pack_sequences(const Tokenizer& tokenizer, const std::vector<std::string>& texts,
                                                 int64_t seq_len);

struct PretrainResult {
  bool interrupted = false;
  int64_t start_step = 0, end_step = 0, total_steps = 0;
  std::vector<double> losses;  // this call's steps
  double train_seconds = 0;
  int64_t all_reduce_bytes = 0;   // as in TrainResult
  double all_reduce_seconds = 0;
};

// Throws std::runtime_error on a non-finite loss (the last checkpoint is kept).
PretrainResult pretrain_mlm(MaskedLMImpl& model, const Tokenizer& tokenizer, const std::vector<std::vector<int64_t>>& sequences,
                            const PretrainOptions& options, const TrainCallbacks& callbacks = {});

// Sets the embedding row of every vocabulary entry that is a whole word (not a "##" piece or a
// special token) found in `vectors`. Vectors are mapped to the hidden size by a fixed random map
// with orthonormal rows or columns (so angles between words survive when dim <= hidden) and
// scaled by one factor to a mean row norm of `mean_norm`; N(0, 0.02) rows would have norm
// 0.02 * sqrt(hidden), so the word identity dominates the position embedding at the start. The
// decoder is tied, so the output side starts from the same vectors. Returns the rows set.
int64_t init_word_embeddings(MaskedLMImpl& model, const Tokenizer& tokenizer, const WordVectors& vectors,
                             double mean_norm = 1.0, uint64_t seed = 0);

// Writes config.json (with `config_json_extra` fields merged in), model.safetensors (Hugging
// Face's BertForMaskedLM names, the tied decoder not repeated) into `dir`, each atomically.
void save_pretrained(MaskedLMImpl& model, const std::string& dir);

}  // namespace gsoft
