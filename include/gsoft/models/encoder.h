#pragma once
// BERT and RoBERTa encoders with Hugging Face's module names, so checkpoints load by name and
// adapter targets ("query", "value", "attention.output.dense", "intermediate.dense",
// "output.dense") work unchanged. Every linear layer is a gsoft::AdaptableLinear.
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <string>
#include <vector>

#include "gsoft/adapters/adaptable_linear.h"

namespace gsoft {

// The fields of a Hugging Face config.json that the encoders use. Missing fields take
// transformers' defaults for the model type.
// The largest encoder a config.json may describe (BERT-large has 335M parameters); each size
// field has its own bound too, so that a hostile config cannot make the model allocate terabytes.
constexpr int64_t kMaxEncoderParams = int64_t{4} << 30;

struct EncoderConfig {
  std::string model_type = "bert";  // "bert" or "roberta"
  int64_t vocab_size = 30522;
  int64_t hidden_size = 768;
  int64_t num_hidden_layers = 12;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 3072;
  std::string hidden_act = "gelu";  // gelu, gelu_new, gelu_pytorch_tanh, relu
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  double layer_norm_eps = 1e-12;
  int64_t pad_token_id = 0;
  int64_t num_labels = 2;
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  std::vector<std::string> architectures;
  std::vector<std::string> label_names;  // id2label in id order; empty when the config has none
  std::string problem_type;              // "regression", "single_label_classification" or empty
  std::string classifier_head;           // "authors_glue" selects HeadKind::AuthorsGlue (gsoft's own field)

  // Throws std::runtime_error naming `origin` and the field on a bad value.
  static EncoderConfig from_json(const std::string& text, const std::string& origin = "config.json");
  static EncoderConfig from_file(const std::string& path);
  bool is_roberta() const { return model_type == "roberta"; }
  // The longest input the position embeddings allow (RoBERTa's positions start after padding).
  int64_t max_tokens() const { return max_position_embeddings - (is_roberta() ? pad_token_id + 1 : 0); }
};

struct EncoderOutput {
  torch::Tensor last_hidden_state;  // (B, T, H)
  torch::Tensor pooler_output;      // (B, H), undefined without a pooler
};

class EncoderModelImpl : public torch::nn::Module {
 public:
  explicit EncoderModelImpl(const EncoderConfig& config, bool add_pooler = true);
  // input_ids, attention_mask (1 = token, 0 = padding), token_type_ids: (B, T) int64.
  // attention_mask and token_type_ids may be undefined (all ones / all zeros).
  EncoderOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                        const torch::Tensor& token_type_ids = {});

  EncoderConfig config;
};
TORCH_MODULE(EncoderModel);

enum class HeadKind {
  // BertForSequenceClassification (classifier on the pooled output) or
  // RobertaForSequenceClassification (classifier.dense -> tanh -> classifier.out_proj on <s>).
  HuggingFace,
  // The head of the GSOFT authors' GLUE code: classifier.dense -> ReLU -> dropout ->
  // classifier.out_proj on the first token of the last hidden state, for BERT and RoBERTa alike.
  AuthorsGlue,
};

// The authors' per-task head dropout (cola 0.1, mnli 0.15, mrpc 0.0, qnli 0.1, qqp 0.15, rte 0.2,
// sst2 0.0, stsb 0.2). Throws listing the tasks for an unknown one.
double glue_head_dropout(const std::string& task);

// Cross-entropy for logits (B, C > 1) against int64 labels (B); MSE for logits (B, 1) against
// float labels (B), as for STS-B.
torch::Tensor sequence_classification_loss(const torch::Tensor& logits, const torch::Tensor& labels);

// A sequence classifier with the encoder registered as "bert" or "roberta", as in Hugging Face.
class SequenceClassifierImpl : public torch::nn::Module {
 public:
  explicit SequenceClassifierImpl(const EncoderConfig& config, HeadKind head = HeadKind::HuggingFace,
                                  double head_dropout = -1);  // < 0: hidden_dropout_prob
  // Logits (B, num_labels). Dropout is off in eval mode.
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                        const torch::Tensor& token_type_ids = {});

  EncoderConfig config;
  HeadKind head_kind;
  double head_dropout;
  EncoderModel encoder{nullptr};
};
TORCH_MODULE(SequenceClassifier);

// BertForMaskedLM / RobertaForMaskedLM: the encoder (no pooler) and the prediction head
// cls.predictions.{transform.dense, transform.LayerNorm, bias} (RoBERTa: lm_head.{dense,
// layer_norm, bias}) whose decoder is tied to the word embeddings, as Hugging Face saves them.
class MaskedLMImpl : public torch::nn::Module {
 public:
  explicit MaskedLMImpl(const EncoderConfig& config);
  // Vocabulary logits (N, vocab) at the flat positions `positions` (indices into B*T).
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask,
                        const torch::Tensor& positions);

  EncoderConfig config;
  EncoderModel encoder{nullptr};

 private:
  torch::nn::Linear dense_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
  torch::Tensor bias_;
};
TORCH_MODULE(MaskedLM);

// Hugging Face's initialisation for training from scratch: linear and embedding weights from
// N(0, std^2) (std = initializer_range, 0.02), biases 0, LayerNorm weight 1 and bias 0; padding
// embeddings 0. libtorch's defaults (N(0, 1) embeddings) make a tied MLM decoder start with huge
// logits.
void init_weights(torch::nn::Module& model, double std = 0.02);

// Loads a Hugging Face checkpoint directory (config.json + model.safetensors or a sharded index)
// into a sequence classifier. A checkpoint of the bare encoder (keys without "bert."/"roberta.")
// loads too, leaving the head as initialised. Old "LayerNorm.gamma"/"beta" names are accepted.
// Throws naming every missing encoder tensor and the first shape mismatch (file, key, expected,
// actual). Returns the names of the head (and pooler) tensors that were not in the checkpoint.
std::vector<std::string> load_hf_checkpoint(SequenceClassifierImpl& model, const std::string& dir);

}  // namespace gsoft
